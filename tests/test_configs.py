"""`proxydiag check`: the readers, the cross-check and the fixes, on configurations that
the real programs accept (`haproxy -c`, `nginx -t`, stunnel's own start-up), and the
fixes printed for them applied and checked by the same programs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxydiag import configs
from proxydiag.configs import compose, fixes, haproxy, haproxy_sections, tree
from proxydiag.configs.model import ConfigReadError
from proxydiag.configs.stalwart import load as load_stalwart
from proxydiag.pipeline.check import check_configurations
from proxydiag.report.views import told
from tests.daemons import need
from tests.stalwart_configs import stalwart_toml

ROOT = Path(__file__).resolve().parent.parent
PROXY, PROXY2, SERVER = "127.30.0.20", "127.30.0.21", "127.30.0.30"
NGINX_MODULES = ("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
                 "load_module /usr/lib/nginx/modules/ngx_mail_module.so;\n")
STALWART = stalwart_toml("smtp", "submissions", "imap", "imaps", trusted=[PROXY])




@pytest.fixture(scope="module")
def pem(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
                    str(directory / "key.pem"), "-out", str(directory / "cert.pem"), "-subj", "/CN=mail.example.test"],
                   check=True, capture_output=True)
    combined = directory / "both.pem"
    combined.write_text((directory / "cert.pem").read_text() + (directory / "key.pem").read_text())
    return combined


def haproxy_cfg(body: str) -> str:
    return textwrap.dedent("""\
        global
            maxconn 100
        defaults
            mode tcp
            timeout connect 3s
            timeout client 30s
            timeout server 30s
        """) + textwrap.dedent(body)


def haproxy_accepts(path: Path) -> None:
    run = subprocess.run([need("haproxy"), "-c", "-q", "-f", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + run.stdout


def nginx_accepts(path: Path) -> None:
    run = subprocess.run([need("nginx"), "-t", "-q", "-e", "stderr", "-p", str(path.parent), "-c", str(path),
                          "-g", f"pid {path.parent}/nginx.pid;"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def nginx_conf(body: str) -> str:
    return NGINX_MODULES + "events {}\n" + textwrap.dedent(body)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def stalwart(tmp_path: Path, text: str = STALWART):
    return load_stalwart(str(write(tmp_path, "config.toml", text)))


def codes(result) -> list[str]:
    return [judgement.code for judgement in result.judgements]


def fixed(path: Path, result, code: str) -> Path:
    """The file with the edits printed for `code` applied (as a new file beside it)."""
    edits = [edit for judgement in result.judgements if judgement.code == code for edit in judgement.edits]
    assert edits, f"{code}: no edit printed"
    new = path.with_name("fixed-" + path.name)
    new.write_text(fixes.apply(path.read_text(), edits, str(path)))
    return new


def refixed_check(original: Path, new: Path, stalwart_config=None):
    """Check the fixed file under the original's name, so citations line up."""
    text = new.read_text()
    saved = original.read_text()
    original.write_text(text)
    try:
        return check_configurations([str(original)], stalwart_config)
    finally:
        original.write_text(saved)


# --- HAProxy -------------------------------------------------------------------------------

HAPROXY_CASES = {
    "PD301": f"""
        listen smtps
            bind {PROXY}:465 ssl crt PEM
            source {PROXY}
            server s1 {SERVER}:10025 send-proxy-v2
        """,
    "PD302": f"""
        listen imaps
            bind {PROXY}:993 ssl crt PEM
            source {PROXY}
            server s1 {SERVER}:10143 send-proxy
        """,
    "PD101": f"""
        frontend smtp
            bind {PROXY}:587
            default_backend mail
        backend mail
            source {PROXY}
            server s1 {SERVER}:10025
        """,
    "PD206": f"""
        listen smtp
            bind {PROXY}:587
            source {PROXY2}
            server s1 {SERVER}:10025 send-proxy-v2
        """,
    "PD109": f"""
        listen smtp
            bind {PROXY}:587 accept-proxy
            source {PROXY}
            server s1 {SERVER}:10025 send-proxy-v2
        """,
    "PD403": f"""
        listen imap
            bind {PROXY}:143
            source {PROXY}
            server s1 {SERVER}:10143 send-proxy-v2 check port 10143
        """,
    "PD110": f"""
        frontend mail
            bind {PROXY}:143
            tcp-request inspect-delay 5s
            tcp-request content accept if {{ req.ssl_hello_type 1 }}
            use_backend tls if {{ req.ssl_sni -i mail.example.test }}
            default_backend imap
        backend tls
            source {PROXY}
            server s1 {SERVER}:10993 send-proxy-v2
        backend imap
            source {PROXY}
            server s1 {SERVER}:10143 send-proxy-v2
        """,
    "PD303": f"""
        listen imaps
            bind {PROXY}:993
            source {PROXY}
            server s1 {SERVER}:10143 send-proxy-v2
        """,
    "PD304": f"""
        listen imaps
            bind {PROXY}:993 ssl crt PEM
            source {PROXY}
            server s1 {SERVER}:10993 send-proxy-v2-ssl
        """,
}


@pytest.mark.lab
@pytest.mark.parametrize("code", sorted(HAPROXY_CASES))
def test_haproxy_mistake_found_and_its_fix_checked_by_haproxy(code, tmp_path, pem):
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(HAPROXY_CASES[code].replace("PEM", str(pem))))
    haproxy_accepts(path)
    config = stalwart(tmp_path)
    result = check_configurations([str(path)], config)
    assert code in codes(result)
    judgement = next(j for j in result.judgements if j.code == code)
    assert str(path) in str(judgement.evidence)
    if code in ("PD101", "PD206", "PD301", "PD302", "PD403", "PD303"):
        assert "config.toml:" in judgement.evidence["stalwart"], "the evidence names Stalwart's file and line"
    if code == "PD206":
        assert "PD102" in codes(result)  # Stalwart answers the header as data
        return  # the fix is on Stalwart's side (trust the proxy) or removes the header
    new = fixed(path, result, code)
    haproxy_accepts(new)
    assert code not in codes(refixed_check(path, new, config))


@pytest.mark.lab
def test_haproxy_correct_setup_has_no_error(tmp_path, pem):
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(f"""
        listen imaps
            bind {PROXY}:993 ssl crt {pem}
            source {PROXY}
            server s1 {SERVER}:10143 send-proxy-v2-ssl check
        listen smtp_passthrough
            bind {PROXY}:465
            source {PROXY}
            server s1 {SERVER}:10465 send-proxy-v2
        """))
    haproxy_accepts(path)
    result = check_configurations([str(path)], stalwart(tmp_path))
    assert result.errors == [] and codes(result) == []


@pytest.mark.lab
def test_haproxy_reader_facts(tmp_path, pem):
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(f"""
        defaults named
            mode tcp
            timeout connect 3s
            timeout client 30s
            timeout server 30s
            source {PROXY}
            default-server send-proxy-v2
        frontend front from named
            bind {PROXY}:993,{PROXY}:995 ssl crt {pem}
            bind [::1]:25 accept-proxy
            default_backend back
        backend back from named
            server a {SERVER}:10143 proxy-v2-options ssl,ssl-cipher check
            server b {SERVER}:+10000 no-send-proxy-v2 source {PROXY2}
        """))
    haproxy_accepts(path)
    config = haproxy.load(str(path))
    fronts = {(f.address, f.port): f for f in config.listeners}
    assert fronts[(PROXY, 995)].tls_terminated and not fronts[(PROXY, 995)].accepts_header
    assert fronts[("::1", 25)].accepts_header and not fronts[("::1", 25)].tls_terminated
    routes = {(r.front.port, r.server_port): r for r in config.routes}
    a = routes[(993, 10143)]
    assert (a.sends, a.ssl_tlv, a.ssl_cipher, a.source_address) == ("v2", True, True, PROXY)
    assert a.health_check is not None and a.health_check.sends_header and a.health_check.local
    b = routes[(995, 10995)]  # a `+N` port is the client's destination port plus N
    assert (b.sends, b.source_address, b.health_check) == ("none", PROXY2, None)
    assert a.origin.line == b.origin.line - 1 and a.origin.text.strip().startswith("server a")


# --- nginx ---------------------------------------------------------------------------------

def nginx_terminating(port: int, server_port: int) -> str:
    """A stream server terminating TLS on `port`, a v1 header to Stalwart's `server_port`."""
    return f"""
        stream {{
            server {{
                listen {PROXY}:{port} ssl;
                ssl_certificate PEM;
                ssl_certificate_key PEM;
                proxy_bind {PROXY};
                proxy_pass {SERVER}:{server_port};
                proxy_protocol on;
            }}
        }}
        """


NGINX_CASES = {
    "PD302": nginx_terminating(993, 10143),
    "PD101": f"""
        stream {{
            upstream smtp {{
                server {SERVER}:10025;
            }}
            server {{
                listen {PROXY}:587;
                proxy_bind {PROXY};
                proxy_pass smtp;
            }}
        }}
        """,
    "PD102": f"""
        stream {{
            proxy_protocol on;
            server {{
                listen {PROXY}:587;
                proxy_bind {PROXY2};
                proxy_pass {SERVER}:10025;
            }}
        }}
        """,
    "PD109": f"""
        stream {{
            server {{
                listen {PROXY}:587 proxy_protocol;
                proxy_bind {PROXY};
                proxy_pass {SERVER}:10025;
                proxy_protocol on;
            }}
        }}
        """,
    # submissions terminated into the implicit-TLS 10465, the only plain SMTP listener the MX one
    "PD304": nginx_terminating(465, 10465),
    "PD110": f"""
        stream {{
            server {{
                listen {PROXY}:143;
                ssl_preread on;
                proxy_bind {PROXY};
                proxy_pass {SERVER}:10143;
                proxy_protocol on;
            }}
        }}
        """,
}


@pytest.mark.lab
@pytest.mark.parametrize("code", sorted(NGINX_CASES))
def test_nginx_mistake_found_and_its_fix_checked_by_nginx(code, tmp_path, pem):
    path = write(tmp_path, "nginx.conf", nginx_conf(NGINX_CASES[code].replace("PEM", str(pem))))
    nginx_accepts(path)
    config = stalwart(tmp_path)
    result = check_configurations([str(path)], config)
    assert code in codes(result), result.judgements
    new = fixed(path, result, code)
    nginx_accepts(new)
    assert code not in codes(refixed_check(path, new, config))


def pd304_edits(tmp_path: Path, name: str, text: str, stalwart_text: str = STALWART) -> tuple[Path, list[str]]:
    path = write(tmp_path, name, text)
    result = check_configurations([str(path)], stalwart(tmp_path, stalwart_text))
    (found,) = [judgement for judgement in result.judgements if judgement.code == "PD304"]
    return path, [f"{edit.origin.line}: {' | '.join(edit.new) or '(deleted)'}" for edit in found.edits]


def test_nginx_pd304_passes_tls_through_to_the_implicit_listener_never_to_the_mx_one(tmp_path):
    """The page: nginx before 1.31.4 cannot carry the TLS flag, so `listen 465` loses `ssl` and
    its certificates, and the implicit-TLS upstream stays; 10025 is another service's."""
    path, edits = pd304_edits(tmp_path, "nginx.conf", nginx_conf(NGINX_CASES["PD304"].replace("PEM", "/etc/ssl/mail.pem")))
    listen = line_number(path, "listen")
    assert edits == [f"{listen}:         listen {PROXY}:465;", f"{listen + 1}: (deleted)", f"{listen + 2}: (deleted)"]


HAPROXY_SUBMISSIONS = f"""
    listen submissions
        bind {PROXY}:465 ssl crt /etc/ssl/mail.pem
        source {PROXY}
        server s1 {SERVER}:10465 send-proxy-v2
    """


def test_haproxy_pd304_forwards_to_the_plain_listener_of_the_same_service_with_the_ssl_tlv(tmp_path):
    with_submission = stalwart_toml("smtp", "submission", "submissions", trusted=[PROXY])
    path, edits = pd304_edits(tmp_path, "haproxy.cfg", haproxy_cfg(HAPROXY_SUBMISSIONS), with_submission)
    assert edits == [f"{line_number(path, 'server s1')}:     server s1 {SERVER}:10587 send-proxy-v2-ssl"]


@pytest.mark.lab
def test_haproxy_pd304_fix_checked_by_haproxy(tmp_path, pem):
    config = stalwart(tmp_path, stalwart_toml("smtp", "submission", "submissions", trusted=[PROXY]))
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(HAPROXY_SUBMISSIONS.replace("/etc/ssl/mail.pem", str(pem))))
    haproxy_accepts(path)
    new = fixed(path, check_configurations([str(path)], config), "PD304")
    haproxy_accepts(new)
    assert "PD304" not in codes(refixed_check(path, new, config))


def test_haproxy_pd304_points_at_no_listener_of_another_service(tmp_path):
    _, edits = pd304_edits(tmp_path, "haproxy.cfg", haproxy_cfg(HAPROXY_SUBMISSIONS))
    assert not [edit for edit in edits if "10025" in edit]


def test_a_finding_with_no_edit_of_the_user_s_lines_prints_its_page_s_fix(tmp_path):
    """No plain submission listener to point HAProxy at: the page's fix (terminate and send
    the SSL TLV to the plain listener, or pass TLS through), never an empty one."""
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(HAPROXY_SUBMISSIONS))
    result = check_configurations([str(path)], stalwart(tmp_path, STALWART))
    (finding,) = [finding for finding in told(result.document())["findings"] if finding["code"] == "PD304"]
    assert "send-proxy-v2-ssl" in finding["fix"] and "10025" not in finding["fix"]


def check_printed(tmp_path: Path, config: str) -> list[str]:
    """`proxydiag check` on an nginx configuration and STALWART, as the terminal shows it."""
    path = write(tmp_path, "nginx.conf", nginx_conf(config.replace("PEM", "/etc/ssl/mail.pem")))
    run = subprocess.run([sys.executable, "-m", "proxydiag", "check", str(path), "--stalwart-config",
                          str(write(tmp_path, "config.toml", STALWART)), "--fail-on", "never"],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "COLUMNS": "120"}, timeout=120)
    assert run.returncode == 0, run.stderr
    return [line.rstrip() for line in run.stdout.splitlines()]


def test_a_fix_s_diff_follows_its_heading_after_one_blank_line(tmp_path):
    printed = check_printed(tmp_path, NGINX_CASES["PD304"])
    headings = [number for number, line in enumerate(printed) if line.strip().startswith("In ") and ", line " in line]
    assert headings and all(printed[number + 1] == "" and printed[number + 2].strip().startswith(("-", "+"))
                            for number in headings), printed


def test_an_inserted_line_shows_its_neighbour_as_context_not_as_removed_and_added(tmp_path):
    printed = check_printed(tmp_path, NGINX_CASES["PD101"])
    diff = [line.strip() for line in printed if line.strip().startswith(("+", "-")) or line.strip() == "proxy_pass smtp;"]
    assert diff == ["proxy_pass smtp;", "+        proxy_protocol on;"], printed


def line_number(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.lab
def test_nginx_includes_http_and_mail(tmp_path, pem):
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d", "stream.conf", f"""
        server {{
            listen {PROXY}:25;
            proxy_bind {PROXY};
            proxy_pass {SERVER}:10025;
            proxy_protocol on;
        }}
        """)
    path = write(tmp_path, "nginx.conf", nginx_conf(f"""
        stream {{
            include conf.d/*.conf;
        }}
        mail {{
            server_name mail.example.test;
            auth_http 127.30.0.40:9000/auth;
            server {{
                listen {PROXY}:110 proxy_protocol;
                protocol pop3;
                proxy_protocol on;
            }}
        }}
        http {{
            server {{
                listen {PROXY}:443 ssl;
                ssl_certificate {pem};
                ssl_certificate_key {pem};
                location / {{ proxy_pass http://{SERVER}:10443; }}
            }}
        }}
        """))
    nginx_accepts(path)
    config = configs.load(str(path))
    assert config.kind == "nginx"
    smtp = next(route for route in config.routes if route.front and route.front.port == 25)
    assert smtp.sends == "v1" and smtp.origin.path.endswith("stream.conf") and smtp.source_address == PROXY
    assert {f.port for f in config.listeners} == {25, 110, 443}
    https = next(route for route in config.routes if route.front and route.front.port == 443)
    assert (https.sends, https.server_port, https.front.tls_terminated) == ("none", 10443, True)
    result = check_configurations([str(path)], stalwart(tmp_path))
    assert "PD209" in codes(result) and "PD109" in codes(result)  # public 25 to 10025; mail listen proxy_protocol



HTTPS_LISTENER = STALWART + """
[server.listener.https]
bind = ["[::]:10443"]
protocol = "http"
tls.implicit = true
"""


# ngx_http_proxy_module: `proxy_pass https://...` speaks TLS to the upstream (stream's
# `proxy_ssl on;` has no http counterpart); only `http://` into an implicit-TLS listener is PD304.
@pytest.mark.lab
@pytest.mark.parametrize("upstream", [f"https://{SERVER}:10443", "https://stalwart"])
def test_nginx_http_proxy_pass_https_speaks_tls_to_the_upstream(tmp_path, pem, upstream):
    path = write(tmp_path, "nginx.conf", nginx_conf(f"""
        http {{
            upstream stalwart {{ server {SERVER}:10443; }}
            server {{
                listen {PROXY}:443 ssl;
                ssl_certificate {pem};
                ssl_certificate_key {pem};
                location / {{ proxy_pass {upstream}; }}
            }}
        }}
        """))
    nginx_accepts(path)
    (route,) = configs.load(str(path)).routes
    assert route.tls_to_server and route.server_port == 10443
    assert "PD304" not in codes(check_configurations([str(path)], stalwart(tmp_path, HTTPS_LISTENER)))


@pytest.mark.lab
def test_nginx_http_proxy_pass_http_into_implicit_tls_is_fixed_with_https(tmp_path, pem):
    path = write(tmp_path, "nginx.conf", nginx_conf(f"""
        http {{
            server {{
                listen {PROXY}:443 ssl;
                ssl_certificate {pem};
                ssl_certificate_key {pem};
                location / {{ proxy_pass http://{SERVER}:10443; }}
            }}
        }}
        """))
    config = stalwart(tmp_path, HTTPS_LISTENER)
    result = check_configurations([str(path)], config)
    assert "PD304" in codes(result)
    new = fixed(path, result, "PD304")
    assert f"proxy_pass https://{SERVER}:10443;" in new.read_text()
    nginx_accepts(new)
    assert "PD304" not in codes(refixed_check(path, new, config))


@pytest.mark.lab
def test_nginx_v2_carries_the_ssl_tlv_only_after_terminating_tls(tmp_path, pem):
    """nginx 1.31.4 src/core/ngx_proxy_protocol.c: the SSL TLV is filled from the client's TLS
    connection; a plaintext front gets none."""
    from proxydiag.configs import nginx as nginx_reader

    text = nginx_conf(f"""
        stream {{
            proxy_protocol v2;
            server {{ listen {PROXY}:993 ssl; ssl_certificate {pem}; ssl_certificate_key {pem};
                     proxy_pass {SERVER}:10143; }}
            server {{ listen {PROXY}:143; proxy_pass {SERVER}:10143; }}
        }}
        """)
    path = write(tmp_path, "nginx.conf", text)
    routes = {route.front.port: route for route in nginx_reader.load(str(path)).routes if route.front}
    assert routes[993].ssl_tlv and routes[993].sends == "v2"
    assert not routes[143].ssl_tlv and routes[143].sends == "v2"

# --- stunnel -------------------------------------------------------------------------------


def stunnel_accepts(path: Path) -> None:
    """stunnel has no dry run: it must get through its configuration and start."""
    process = subprocess.Popen([need("stunnel4"), str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert "Configuration successful" in output, output


@pytest.mark.lab
def test_stunnel_v1_behind_tls(tmp_path, pem):
    path = write(tmp_path, "stunnel.conf", textwrap.dedent(f"""\
        foreground = yes
        pid =
        [imaps]
        accept = {PROXY}:9993
        connect = {SERVER}:10143
        cert = {pem}
        local = {PROXY}
        protocol = proxy
        """))
    stunnel_accepts(path)
    config = configs.load(str(path))
    assert config.kind == "stunnel"
    assert "PD302" in codes(check_configurations([str(path)]))  # stunnel terminates TLS, v1 cannot say so
    result = check_configurations([str(path)], stalwart(tmp_path))
    judgement = next(j for j in result.judgements if j.code == "PD302")
    assert "config.toml:" in judgement.evidence["stalwart"] and "stunnel.conf:5" in judgement.evidence["proxy"]
    assert judgement.edits == () and "10993" in judgement.advice  # stunnel has no v2: pass TLS through


@pytest.mark.lab
def test_stunnel_terminating_to_plain_listener(tmp_path, pem):
    path = write(tmp_path, "stunnel.conf", textwrap.dedent(f"""\
        foreground = yes
        pid =
        [imaps]
        accept = {PROXY}:993
        connect = {SERVER}:10143
        cert = {pem}
        local = {PROXY}
        """))
    stunnel_accepts(path)
    result = check_configurations([str(path)], stalwart(tmp_path))
    assert "PD101" in codes(result)  # Stalwart trusts the source: a header is required
    new = fixed(path, result, "PD101")
    stunnel_accepts(new)
    again = refixed_check(path, new, stalwart(tmp_path))
    assert "PD101" not in codes(again) and "PD302" in codes(again)  # v1 is all stunnel sends


# --- two hops ------------------------------------------------------------------------------


@pytest.mark.lab
def test_two_hops_both_adding_headers(tmp_path):
    outer = write(tmp_path, "outer.cfg", haproxy_cfg(f"""
        listen smtp
            bind {PROXY2}:25
            server inner {PROXY}:25 send-proxy-v2
        """))
    inner = write(tmp_path, "inner.cfg", haproxy_cfg(f"""
        listen smtp
            bind {PROXY}:25
            source {PROXY}
            server s1 {SERVER}:25 send-proxy-v2
        """))
    haproxy_accepts(outer)
    haproxy_accepts(inner)
    result = check_configurations([str(outer), str(inner)])
    assert "PD106" in codes(result)
    new = fixed(inner, result, "PD106")
    haproxy_accepts(new)
    text = new.read_text()
    inner.write_text(text)
    assert "PD106" not in codes(check_configurations([str(outer), str(inner)]))


# --- bad input -----------------------------------------------------------------------------


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", "check", *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/bin"})


def test_bad_files_one_line_each_exit_2_and_the_others_checked(tmp_path):
    good = write(tmp_path, "good.cfg", haproxy_cfg(f"""
        listen smtp
            bind {PROXY}:587 accept-proxy
            server s1 {SERVER}:10025 send-proxy-v2
        """))
    broken = write(tmp_path, "broken.cfg", haproxy_cfg(f"""
        listen smtp
            bind {PROXY}:587
            server s1 "{SERVER}:10025
        """))
    missing_include = write(tmp_path, "nginx.conf", nginx_conf("stream {\n    include nowhere.conf;\n}\n"))
    other = write(tmp_path, "stalwart.toml", "[server.listener.smtp]\nbind = ['[::]:25']\n")
    run = run_check(str(good), str(broken), str(missing_include), str(other), "--format", "json")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 3 and all("Traceback" not in line for line in lines)
    assert f"{broken}:11:" in run.stderr and "unmatched quote" in run.stderr
    assert f"{missing_include}:5: include {tmp_path}/nowhere.conf: no such file" in run.stderr
    assert str(other) in run.stderr and "Stalwart" in run.stderr
    import json

    document = json.loads(run.stdout)
    assert [finding["code"] for finding in document["findings"]] == ["PD109"]


def test_check_exit_codes_and_formats(tmp_path):
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(f"""
        listen smtp
            bind {PROXY}:587 accept-proxy
            server s1 {SERVER}:10025 send-proxy-v2
        """))
    markdown = run_check(str(path), "--format", "markdown")
    assert markdown.returncode == 1 and "PD109" in markdown.stdout and f"-    bind {PROXY}:587 accept-proxy" in markdown.stdout
    assert run_check(str(path), "--fail-on", "never").returncode == 0
    assert run_check(str(path), "--kind", "nginx").returncode == 2


# --- properties of the HAProxy reader ------------------------------------------------------


@given(st.text(max_size=400))
def test_haproxy_reader_never_raises_but_config_errors(text):
    try:
        config = haproxy.parse(text, "h.cfg")
    except ConfigReadError as error:
        assert error.line is None or 1 <= error.line <= max(1, len(text.splitlines()))
        return
    for route in config.routes:
        assert 1 <= route.origin.line <= len(text.splitlines())


SENDS = {"": "none", "send-proxy": "v1", "send-proxy-v2": "v2", "send-proxy-v2-ssl": "v2", "send-proxy-v2-ssl-cn": "v2"}
ports = st.integers(min_value=1, max_value=65535)


@given(st.lists(st.tuples(ports, ports, st.sampled_from(sorted(SENDS)), st.booleans(), st.booleans()), min_size=1,
                max_size=6),
       st.sampled_from(["    ", "\t", "  "]), st.booleans())
def test_haproxy_reader_reads_back_what_was_written(servers, indent, comments):
    """A configuration written from facts reads back as the same facts, whatever the
    indentation and trailing comments."""
    lines = []
    for index, (front, back, send, ssl, accept) in enumerate(servers):
        lines.append(f"listen l{index}" + ("  # a comment" if comments else ""))
        options = (" ssl crt /x.pem" if ssl else "") + (" accept-proxy" if accept else "")
        lines.append(f"{indent}bind 127.30.0.20:{front}{options}")
        lines.append(f"{indent}server s{index} 127.30.0.30:{back} {send}" + (" # send-proxy" if comments else ""))
    config = haproxy.parse("\n".join(lines), "h.cfg")
    assert len(config.routes) == len(servers)
    for route, (front, back, send, ssl, accept) in zip(config.routes, servers, strict=True):
        assert route.front is not None
        assert (route.front.port, route.server_port, route.sends) == (front, back, SENDS[send])
        assert (route.front.tls_terminated, route.front.accepts_header) == (ssl, accept)
        assert route.ssl_tlv == send.startswith("send-proxy-v2-ssl")
        assert route.origin.text.strip().startswith("server")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_haproxy_words_split_like_haproxy(word):
    """A word written in double quotes (with `"` and `\\` escaped) is one word, as HAProxy reads it."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    assert haproxy_sections.split_words(f'server "{escaped}" # tail') == ["server", word]


def test_health_checks_on_their_own_port_reach_a_listener_trusting_through_its_own_list(tmp_path):
    """Stalwart v0.16.18 config/server/listener.rs: a non-empty listener list replaces the global
    one; HAProxy `check port N` sends no header, so checks aimed at N still hit a listener that
    wants one from this proxy (PD403)."""
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg(f"""
        frontend smtp
            bind {PROXY}:25
            default_backend mail
        backend mail
            server s1 {SERVER}:10025 send-proxy-v2 check port 10025 source {PROXY}
        """))
    own_list = STALWART.replace(f'trusted-networks = ["{PROXY}"]', 'trusted-networks = ["10.9.0.0/16"]').replace(
        'protocol = "smtp"\n', f'protocol = "smtp"\nproxy.trusted-networks = ["{PROXY}"]\n', 1)
    assert "PD403" in codes(check_configurations([str(path)], stalwart(tmp_path, own_list)))
    global_only = own_list.replace(f'proxy.trusted-networks = ["{PROXY}"]\n', "")
    assert "PD403" not in codes(check_configurations([str(path)], stalwart(tmp_path, global_only)))


COMPOSE_STALWART = """\
services:
  stalwart:
    image: stalwartlabs/stalwart:v0.16
    ports:
      - "127.0.0.1:40025:{inside}"
      - target: 993
        published: "40993"
        protocol: tcp
"""


@pytest.mark.parametrize("inside, mx_remapped", [(25, False), (10025, True)])
def test_a_published_compose_port_leads_back_to_stalwarts_listener(tmp_path, inside, mx_remapped):
    """Compose spec `ports` (short and long syntax): nginx on the host proxies 25 to
    127.0.0.1:40025, which Docker publishes from the container's port; Stalwart listens there."""
    nginx = write(tmp_path, "nginx.conf", nginx_conf(f"""
        stream {{
            server {{ listen {PROXY}:25; proxy_pass 127.0.0.1:40025; proxy_bind {PROXY}; }}
        }}
        """))
    compose = write(tmp_path, "compose.yaml", COMPOSE_STALWART.format(inside=inside))
    listeners = STALWART.replace("[::]:10025", f"[::]:{inside}")
    result = check_configurations([str(nginx), str(compose)], stalwart(tmp_path, listeners))
    assert not result.errors and "PD608" not in codes(result)
    missing = next(j for j in result.judgements if j.code == "PD101")  # the proxy is trusted and sends none
    assert missing.evidence["published"].startswith(f"{compose}:5: ")
    assert ("PD209" in codes(result)) is mx_remapped
    without = check_configurations([str(nginx)], stalwart(tmp_path, listeners))
    assert "PD101" not in codes(without)  # without the compose file, port 40025 reaches no listener


@pytest.mark.lab
def test_nginx_fix_for_the_version_the_file_shows(tmp_path, pem):
    """A file that already uses `proxy_protocol v2;` is nginx 1.31.4 or later (older ones refuse
    the value): the TLS flag's fix is v2 there; elsewhere the fix that works on every version
    (TLS passed through) comes first. (1.22's nginx -t cannot check a v2 file: not run here.)"""
    def conf(other_header: str) -> Path:
        return write(tmp_path, "nginx.conf", nginx_conf(f"""
            stream {{
                server {{
                    listen {PROXY}:465 ssl;
                    ssl_certificate {pem};
                    ssl_certificate_key {pem};
                    proxy_bind {PROXY};
                    proxy_pass {SERVER}:10025;
                    proxy_protocol on;
                }}
                server {{ listen {PROXY}:143; proxy_bind {PROXY}; proxy_pass {SERVER}:10143; {other_header} }}
            }}
            """))
    path = conf("proxy_protocol v2;")
    result = check_configurations([str(path)], stalwart(tmp_path))
    pd302 = next(j for j in result.judgements if j.code == "PD302")
    assert [edit.new[0].strip() for edit in pd302.edits] == ["proxy_protocol v2;"]
    assert pd302.edits[0].origin.text.strip() == "proxy_protocol on;"
    assert "1.31.4 or later" in pd302.advice and "proxy_protocol v2;" in pd302.advice
    older = conf("proxy_protocol on;")
    result = check_configurations([str(older)], stalwart(tmp_path))
    pd302 = next(j for j in result.judgements if j.code == "PD302")
    assert not any("v2" in line for edit in pd302.edits for line in edit.new)
    nginx_accepts(fixed(older, result, "PD302"))


@pytest.mark.parametrize("text", [
    COMPOSE_STALWART.format(inside=25),
    json.dumps({"services": {"stalwart": {"ports": ["127.0.0.1:40025:25"]}}}, indent=2),
    '{"services": {"stalwart": {"ports": ["127.0.0.1:40025:25"]}}}',
    "'services':\n  stalwart:\n    ports: ['127.0.0.1:40025:25']\n",
])
def test_compose_published_ports_are_read_in_each_spelling_of_its_services_key(tmp_path, text):
    """Block YAML, JSON (one line or indented) and a quoted key: all a compose file."""
    path = write(tmp_path, "stack.conf", text)  # a name that says nothing
    assert [(port.published, port.target) for port in compose.published_ports(str(path))][:1] == [(40025, 25)]


def test_a_proxy_file_is_not_parsed_as_yaml_for_published_ports(tmp_path, monkeypatch):
    """`check` looks for compose ports in every file it is given; a HAProxy file has no
    `services` key, so no YAML parser runs over it (a quarter of check's time before)."""
    parsed = []
    monkeypatch.setattr(tree, "yaml_documents", lambda *args: parsed.append(args) or [])
    path = write(tmp_path, "haproxy.cfg", haproxy_cfg("frontend smtp\n    bind :25\n    default_backend mail\n"
                                                      f"backend mail\n    server s {SERVER}:10025 send-proxy-v2\n"))
    assert compose.published_ports(str(path)) == [] and parsed == []
    assert check_configurations([str(path)]).configs[0].kind == "haproxy"
