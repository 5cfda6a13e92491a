"""`proxydiag check` on configurations shaped after real ones (tests/configs_real/, each
citing at its top the page, issue or repository it is modelled on): every one is read
without a traceback and judged with catalog codes; the HAProxy and nginx ones are
accepted by the programs themselves, and so is every fix printed for them; and one
regression test for each reader bug they showed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxydiag.configs import fixes
from proxydiag.configs.stalwart import load as load_stalwart
from proxydiag.pipeline.check import check_configurations
from proxydiag.rules import catalog
from tests.test_configs import need, nginx_accepts, pem  # noqa: F401 (pem: a fixture)

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "configs_real"
STALWART_CONFIGS = ("-config.toml", ".json")
# The proxy files that go together (a split HAProxy, Traefik static and dynamic), and the
# Stalwart configuration of the same setup where the source gives one.
SETUPS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "stalwart-docs-haproxy": (("stalwart-docs-haproxy.cfg",), "stalwart-docs-config.toml"),
    "stalwart-docs-nginx": (("stalwart-docs-nginx.conf",), "stalwart-docs-config.toml"),
    "stalwart-774": (("stalwart-774-haproxy.cfg",), "stalwart-774-config.toml"),
    "stalwart-2009": (("stalwart-2009-nginx.conf",), "stalwart-2009-config.toml"),
    "website-47": (("website-47-listen-proxy-protocol.conf",), "stalwart-docs-config.toml"),
    "haproxy-tls": (("haproxy-tls-terminate.cfg",), "haproxy-tls-config.toml"),
    "haproxy-debian-tabs": (("haproxy-debian-tabs.cfg",), "haproxy-debian-tabs-config.toml"),
    "haproxy-split": (("haproxy-split/00-global.cfg", "haproxy-split/10-frontends.cfg",
                       "haproxy-split/20-backends.cfg"), "haproxy-split-config.toml"),
    "stalwart-docs-traefik": (("stalwart-docs-traefik.yml",), "stalwart-docs-listeners-016.json"),
    "stalwart-docs-compose": (("stalwart-docs-compose.yml", "stalwart-docs-traefik.yml"), "stalwart-docs-listeners-016.json"),
}
# Files check cannot read, which it says in one line (exit 2): one HAProxy 2.x itself refuses.
REFUSED = {"haraka-listen-address.cfg"}


def proxy_files() -> list[Path]:
    """Every proxy configuration among the fixtures (nginx includes are read through their main file)."""
    files = [path for path in sorted(REAL.rglob("*")) if path.is_file() and not path.name.endswith(STALWART_CONFIGS)]
    return [path for path in files if "stream.d" not in path.parts]


def setups() -> list[tuple[str, tuple[Path, ...], Path | None]]:
    """Every setup: the grouped ones above, and each other proxy file on its own."""
    grouped = {REAL / name for names, _ in SETUPS.values() for name in names}
    found = [(key, tuple(REAL / name for name in names), REAL / stalwart if stalwart else None)
             for key, (names, stalwart) in SETUPS.items()]
    found += [(path.name, (path,), None) for path in proxy_files() if path not in grouped and path.name not in REFUSED]
    return found


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", "check", *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/sbin:/usr/bin:/bin"})


def copy_with_pem(tmp_path: Path, pem: Path) -> Path:
    """The fixtures copied (layout kept, for includes), with PEM replaced by a real certificate."""
    target = tmp_path / "real"
    shutil.copytree(REAL, target)
    for path in target.rglob("*"):
        if path.is_file() and "PEM" in path.read_text():
            path.write_text(path.read_text().replace("PEM", str(pem)))
    return target


def codes_at(result, code: str) -> list[str]:
    return [judgement.evidence.get("proxy", "") for judgement in result.judgements if judgement.code == code]


# --- every fixture ---------------------------------------------------------------------------


@pytest.mark.parametrize("key, files, stalwart", setups(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_real_config_is_checked_without_traceback(key, files, stalwart):
    args = [str(path) for path in files] + (["--stalwart-config", str(stalwart)] if stalwart else [])
    for output in ("json", "rich"):
        run = run_check(*args, "--format", output)
        assert "Traceback" not in run.stderr + run.stdout, run.stderr
        assert run.returncode in (0, 1), run.stderr
        assert run.stderr == ""
        if output == "json":
            document = json.loads(run.stdout)
            known = set(catalog.load_pages())
            assert {finding["code"] for finding in document["findings"]} <= known
            assert document["proxy_config_errors"] == []
            assert document["proxy_configs"], key


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_real_config_is_one_clear_line(name):
    run = run_check(str(REAL / name), "--format", "json")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


HAPROXY = [path for path in proxy_files() if path.suffix == ".cfg" and path.name not in REFUSED
           and "haproxy-split" not in path.parts]
NGINX = [path for path in proxy_files() if path.suffix == ".conf"]


@pytest.mark.lab
@pytest.mark.parametrize("name", [path.name for path in HAPROXY])
def test_real_haproxy_configs_and_their_fixes_pass_haproxy(name, tmp_path, pem):
    real = copy_with_pem(tmp_path, pem)
    check_fixes(real, (real / name,), haproxy_accepts, stalwart_of(name))


@pytest.mark.lab
def test_real_split_haproxy_config_and_its_fixes_pass_haproxy(tmp_path, pem):
    real = copy_with_pem(tmp_path, pem)
    files, stalwart = SETUPS["haproxy-split"]
    check_fixes(real, tuple(real / name for name in files), lambda _: haproxy_dir_accepts(real / "haproxy-split"),
                stalwart)


@pytest.mark.lab
@pytest.mark.parametrize("name", [str(path.relative_to(REAL)) for path in NGINX])
def test_real_nginx_configs_and_their_fixes_pass_nginx(name, tmp_path, pem):
    real = copy_with_pem(tmp_path, pem)
    check_fixes(real, (real / name,), nginx_accepts, stalwart_of(name))


def stalwart_of(name: str) -> str | None:
    return next((stalwart for names, stalwart in SETUPS.values() if name in names), "stalwart-docs-config.toml")


def haproxy_accepts(path: Path) -> None:
    """`haproxy -c`, with -dr: servers named by host names that do not resolve here
    (stalwart, n1.example.net) start without an address instead of failing."""
    run = subprocess.run([need("haproxy"), "-c", "-q", "-dr", "-f", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + run.stdout


def haproxy_dir_accepts(directory: Path) -> None:
    haproxy_accepts(directory)


def check_fixes(real: Path, files: tuple[Path, ...], accepts, stalwart: str | None) -> None:
    """The configuration as it is, and with every edit printed for it, passes the program."""
    accepts(files[0])
    stalwart_config = load_stalwart(str(real / stalwart)) if stalwart else None
    result = check_configurations([str(path) for path in files], stalwart_config)
    assert not result.errors, [str(error) for error in result.errors]
    for judgement in result.judgements:  # each finding's fix on its own
        touched = {edit.origin.path for edit in judgement.edits}
        saved = {path: Path(path).read_text() for path in touched}
        for path in touched:
            Path(path).write_text(fixes.apply(saved[path], judgement.edits, path))
        try:
            accepts(files[0])
        finally:
            for path, text in saved.items():
                Path(path).write_text(text)


# --- regressions -----------------------------------------------------------------------------


def line_of(path: Path, needle: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_haproxy_server_template_is_a_route():
    path = REAL / "haproxy-default-server-template.cfg"
    config = check_configurations([str(path)]).configs[0]
    template = [route for route in config.routes if route.server_port == 10025]
    assert {route.front.endpoint for route in template if route.front} == {"*:25", "[::]:25"}
    assert all(route.sends == "v2" and route.server_address == "stalwart" for route in template)
    assert {route.origin.line for route in template} == {line_of(path, "server-template mail 3")}


def test_haproxy_use_backend_on_dst_port_reaches_only_that_port():
    path = REAL / "haproxy-sni-443.cfg"
    result = check_configurations([str(path)])
    routes = {(route.front.port, route.server_port) for route in result.configs[0].routes if route.front}
    assert (143, 143) in routes and (993, 993) in routes
    assert (143, 993) not in routes and (993, 143) not in routes
    assert "PD303" not in [judgement.code for judgement in result.judgements]


@pytest.mark.lab
def test_haproxy_address_on_the_listen_line_is_refused_like_haproxy():
    path = REAL / "haraka-listen-address.cfg"
    run = run_check(str(path))
    assert run.returncode == 2
    assert run.stderr.strip() == (f"proxydiag: {path}:{line_of(path, 'listen smtp :25')}: 'listen smtp :25': HAProxy 2.x "
                                  "refuses anything after the section name (\"please use the 'bind' keyword for "
                                  "listening addresses\"): write 'bind :25' inside the section")
    assert subprocess.run([need("haproxy"), "-c", "-q", "-f", str(path)], capture_output=True).returncode != 0


def test_haproxy_split_over_files_is_read_as_one_configuration():
    files, stalwart = SETUPS["haproxy-split"]
    paths = [str(REAL / name) for name in files]
    result = check_configurations(paths, load_stalwart(str(REAL / stalwart)))
    assert not result.errors, [str(error) for error in result.errors]
    assert len(result.configs) == 1
    routes = {(route.front.port, route.endpoint, route.sends) for route in result.configs[0].routes if route.front}
    assert routes == {(25, "10.0.0.3:25", "v2"), (993, "10.0.0.3:993", "none")}
    backends = REAL / "haproxy-split" / "20-backends.cfg"
    assert codes_at(result, "PD101") == [f"{backends}:{line_of(backends, 'no-send-proxy-v2')}: "
                                         "server mail1 10.0.0.3:993 no-send-proxy-v2"]


def test_haproxy_files_that_stand_alone_stay_separate():
    paths = [str(REAL / "stalwart-docs-haproxy.cfg"), str(REAL / "haraka-bind.cfg")]
    assert [config.path for config in check_configurations(paths).configs] == paths


def test_stalwart_016_listeners_written_as_arrays_are_read_and_refused():
    stalwart = load_stalwart(str(REAL / "stalwart-docs-listeners-016.json"))
    assert stalwart.listeners == []
    assert len(stalwart.problems) == 5 and all("a JSON array" in problem for problem in stalwart.problems)


def test_a_tab_indented_config_is_quoted_with_spaces_and_fixed_with_its_tabs():
    """Debian's packaged haproxy.cfg indents with tabs and aligns `server\tname` with them:
    the evidence and the fix show them as spaces (not `\\x09`), the edit applied keeps them."""
    config, stalwart = REAL / "haproxy-debian-tabs.cfg", REAL / "haproxy-debian-tabs-config.toml"
    run = run_check(str(config), "--stalwart-config", str(stalwart), "--format", "json")
    (finding,) = json.loads(run.stdout)["findings"]
    assert finding["code"] == "PD102" and "\\x09" not in json.dumps(finding), finding
    assert "\n-    server  stalwart 127.0.0.1:10465 send-proxy-v2\n+    server  stalwart 127.0.0.1:10465\n" in finding["fix"]
    result = check_configurations([str(config)], load_stalwart(str(stalwart)))
    (judgement,) = result.judgements
    fixed = fixes.apply(config.read_text(), judgement.edits, str(config))
    assert "\tserver\tstalwart 127.0.0.1:10465\n" in fixed + "\n"


def test_trust_is_cited_where_it_applies_to_the_listener(tmp_path):
    """A listener with no trusted networks of its own and no server-wide ones cites the file
    alone, not another listener's `proxy.trusted-networks` (haproxy-debian-tabs-config.toml:
    'submissions' was cited with imaps' line 7); a listener's own, written inside its table
    as the Stalwart guides do, is cited at its line."""
    from proxydiag.configs.stalwart_lines import StalwartLines

    config = REAL / "haproxy-debian-tabs-config.toml"
    by_id = {listener.id: listener for listener in load_stalwart(str(config)).listeners}
    lines = StalwartLines.of(load_stalwart(str(config)))
    assert lines.trust(by_id["submissions"]) == str(config)
    assert lines.trust(by_id["imaps"]) == f"{config}:{line_of(config, 'proxy.trusted-networks')}"
    two = tmp_path / "config.toml"
    two.write_text(config.read_text() + 'proxy.trusted-networks = ["10.0.0.1/32"]\n')
    lines, listeners = StalwartLines.of(load_stalwart(str(two))), load_stalwart(str(two)).listeners
    assert [lines.trust(listener) for listener in listeners] == [f"{two}:7", f"{two}:13"]
    server_wide = tmp_path / "server.toml"
    server_wide.write_text('[server]\nhostname = "mx"\nproxy.trusted-networks = ["10.0.0.2/32"]\n\n' + config.read_text())
    loaded = load_stalwart(str(server_wide))
    submissions = next(listener for listener in loaded.listeners if listener.id == "submissions")
    assert StalwartLines.of(loaded).trust(submissions) == f"{server_wide}:3"
