"""A lab whose real daemons are configured with hostile text, for tests/test_hostile_real.py:
Postfix, Dovecot, HAProxy and nginx from Debian's packages, started privately from
throw-away configs on 127.70.0.0/16, recorded with tcpdump.

  SERVER 127.70.0.30  Postfix 10025 (PROXY expected, SASL through Dovecot) with a hostile
                      smtpd_banner; 10465 expects no header (HAProxy's 465 sends one: the
                      server answers the header's bytes, PD102 quotes them as hex).
                      Dovecot 10143 (haproxy = yes) with a hostile login_greeting.
                      nginx http 10080 (`listen ... proxy_protocol`).
  HAPROXY 127.70.0.20 25 -> 10025 and 143 -> 10143 with send-proxy-v2 and a UNIQUE_ID
                      whose format holds markup and control characters; 993 and 465
                      terminate TLS and add the client's SNI as the AUTHORITY TLV.
  NGINX 127.70.0.21   stream 80 -> 10080 with proxy_protocol on.
  CLIENT 127.70.0.10  swaks, curl and a socket client bind here (openssl s_client cannot
                      choose its source address: it comes from 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests import daemons
from tests.daemons import DaemonLab, LabError, lab_address

SERVER = lab_address("hostile", 30)
HAPROXY = lab_address("hostile", 20)
NGINX = lab_address("hostile", 21)
CLIENT = lab_address("hostile", 10)
USER = "alice"
PASSWORD = "Hx9-r3al-s3cret"  # nothing proxydiag prints may carry it, in any encoding
HOSTNAME = "mail.lab-hostile.test"
SNI = "Odd_Sni-1.lab-hostile.test"  # an underscore and capitals: accepted by OpenSSL and HAProxy
EHLO = "[/bold]![x](http://127.70.0.9/p.png)[link=http://127.70.0.9/]x[/link]"
# What the daemons are told to say: rich markup, a Markdown image and link, raw HTML, and
# the controls a config file can carry: an OSC 8 hyperlink (ESC, BEL), C1 CSI, U+202E.
HOSTILE = ("[/bold] [link=http://127.70.0.9/]x[/link] ![x](http://127.70.0.9/p.png) <img src=x>"
           " \x1b]8;;http://127.70.0.9/\x07y\x1b]8;;\x07 \u009b31m \u202eevil")
# HAProxy's unique-id-format: the same, plus ESC (an OSC 8 hyperlink), BEL and U+202E.
UNIQUE_ID_FORMAT = r"[/bold][link=http://127.70.0.9/]x[/link]\x1b]8;;http://127.70.0.9/\x07y\x1b]8;;\x07\xe2\x80\xae%[uuid]"
REQUEST_PATH = "/[/bold][link=http://127.70.0.9/]x[/link]![x](http://127.70.0.9/p.png)<img%20src=x>"
NEEDED = ("postfix", "dovecot", "doveadm", "haproxy", "nginx", "tcpdump", "swaks", "curl", "openssl")
CHECK_ADDRESS = lab_address("hostile", 2)  # the lab's own readiness checks connect from here


def missing_programs() -> list[str]:
    return [name for name in NEEDED if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def wait_listening(addr: str, port: int, what: str, log: Path | None = None) -> None:
    daemons.wait_listening(addr, port, what, CHECK_ADDRESS, log)


@dataclass
class Lab(DaemonLab):
    capture: subprocess.Popen | None = None

    def start(self) -> None:
        self.work.chmod(0o755)  # Dovecot's and Postfix's children must traverse it
        (self.work / "logs").mkdir()
        self._certificate(HOSTNAME)
        self._dovecot()
        self._postfix()
        self._haproxy()
        self._nginx()

    def stop(self) -> None:
        self.stop_capture()
        super().stop()

    def start_capture(self, path: Path) -> None:
        log = self.work / "logs" / "tcpdump.log"
        with open(log, "wb") as err:
            self.capture = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-s", "0", "-U", "--immediate-mode", "-Z", "root", "-w", str(path),
                 "tcp and net 127.70.0.0/16"], stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while b"listening on" not in log.read_bytes():
            if time.monotonic() > deadline or self.capture.poll() is not None:
                raise LabError(f"tcpdump did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop_capture(self) -> None:
        if self.capture is None:
            return
        time.sleep(0.5)  # the last FIN/ACKs
        self.capture.send_signal(signal.SIGINT)
        self.capture.wait(timeout=10)
        self.capture = None

    def _dovecot(self) -> None:
        config = daemons.start_dovecot(self, SERVER, "hostile", trusted=HAPROXY, users={USER: PASSWORD}, ports=(10143,),
                                       source=CHECK_ADDRESS, settings=f"""
login_greeting = Dovecot {HOSTILE}
disable_plaintext_auth = no
auth_mechanisms = plain login
""", services=f"""
service imap-login {{
  service_count = 0
  process_min_avail = 1
  inet_listener imap {{
    address = {SERVER}
    port = 10143
    haproxy = yes
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service auth {{
  unix_listener {self.work}/dovecot-auth-postfix {{
    mode = 0666
  }}
}}
""")
        # Until a login process has its auth connection, Dovecot greets "Waiting for
        # authentication process" instead of login_greeting: one login process is kept
        # ready (process_min_avail), and the auth process must answer first.
        checked = subprocess.run(["doveadm", "-c", str(config), "auth", "test", USER, PASSWORD],
                                 capture_output=True, text=True, timeout=60)
        if checked.returncode != 0:
            raise LabError(f"Dovecot's auth process does not answer: {checked.stdout}{checked.stderr}")

    def _postfix(self) -> None:
        daemons.start_postfix(self, SERVER, {10025: "-o smtpd_upstream_proxy_protocol=haproxy", 10465: ""}, f"""
myhostname = {HOSTNAME}
smtpd_banner = $myhostname ESMTP {HOSTILE}
smtpd_tls_security_level = may
smtpd_tls_cert_file = {self.cert}
smtpd_tls_key_file = {self.key}
smtpd_tls_auth_only = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.work}/dovecot-auth-postfix
smtpd_upstream_proxy_timeout = 3s
""", CHECK_ADDRESS)

    def _haproxy(self) -> None:
        daemons.start_haproxy(self, HAPROXY, f"""
listen smtp
    bind {HAPROXY}:25
    server postfix {SERVER}:10025 send-proxy-v2 proxy-v2-options unique-id
listen imap
    bind {HAPROXY}:143
    server dovecot {SERVER}:10143 send-proxy-v2 proxy-v2-options unique-id
listen imaps
    bind {HAPROXY}:993 ssl crt {self.pem}
    server dovecot {SERVER}:10143 send-proxy-v2 proxy-v2-options authority,unique-id,ssl
listen submissions
    bind {HAPROXY}:465 ssl crt {self.pem}
    server postfix {SERVER}:10465 send-proxy-v2 proxy-v2-options authority,unique-id
""", CHECK_ADDRESS, defaults=f'    unique-id-format "{UNIQUE_ID_FORMAT}"\n')

    def _nginx(self) -> None:
        prefix = self.work / "nginx"
        prefix.mkdir()
        error_log = self.work / "logs" / "nginx-error.log"
        (prefix / "nginx.conf").write_text(f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {error_log} info;
events {{ worker_connections 64; }}
stream {{
    server {{
        listen {NGINX}:80;
        proxy_pass {SERVER}:10080;
        proxy_bind {NGINX};
        proxy_protocol on;
    }}
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {SERVER}:10080 proxy_protocol;
        return 404;
    }}
}}
""")
        argv = ["nginx", "-p", f"{prefix}/", "-e", str(error_log), "-c", str(prefix / "nginx.conf")]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True)
        if checked.returncode != 0:
            raise LabError(f"nginx rejected its configuration: {checked.stderr}")
        self._spawn([*argv, "-g", "daemon off;"], "nginx")
        wait_listening(NGINX, 80, "nginx", error_log)
        wait_listening(SERVER, 10080, "nginx", error_log)


@contextlib.contextmanager
def running_lab():
    lab = Lab(Path(tempfile.mkdtemp(prefix="proxydiag-hostile-lab.")))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(lab.work, ignore_errors=True)
