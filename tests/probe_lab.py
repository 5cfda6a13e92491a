"""Real listeners for `proxydiag probe` to ask: Postfix, Dovecot, HAProxy, nginx stream and
stunnel from Debian's packages, started privately from throw-away configs on 127.40.0.0/16.

Layout (production-like: public ports on the proxies, 10000+ on the servers):

  SERVER 127.40.0.10  Postfix  25 plain, 10025 smtpd_upstream_proxy_protocol = haproxy
                      Dovecot 143 plain, 10143 haproxy = yes, 10993 implicit TLS (ssl = required)
  HAPROXY 127.40.0.20 25 send-proxy (v1) -> 10025, 587 send-proxy-v2 -> 10025,
                      143 no header -> Dovecot 143, 2525 waits for the client's bytes
                      (inspect-delay) then send-proxy-v2 -> 10025
  NGINX 127.40.0.21   25 proxy_protocol on (v1) -> 10025,
                      587 `listen ... proxy_protocol` (expects a header from clients) -> 10025
  STUNNEL 127.40.0.22 465 TLS terminated, protocol = proxy (v1) -> 10025

Dovecot trusts headers from HAProxy and from PROBE_TRUSTED, not from PROBE_UNTRUSTED.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests import daemons
from tests.daemons import DaemonLab, LabError, lab_address

SERVER = lab_address("probe", 10)
HAPROXY = lab_address("probe", 20)
NGINX = lab_address("probe", 21)
STUNNEL = lab_address("probe", 22)
PROBE_TRUSTED = lab_address("probe", 2)
PROBE_UNTRUSTED = lab_address("probe", 3)
CLOSED = lab_address("probe", 30)  # nothing listens here
LAB_CLIENT = lab_address("probe", 1)  # the lab's own readiness checks
INSPECT_DELAY = 10  # seconds HAProxy waits for the client's first bytes on 2525


def wait_listening(addr: str, port: int, what: str, log: Path | None = None, seconds: float = 10.0) -> None:
    daemons.wait_listening(addr, port, what, LAB_CLIENT, log, seconds)


class Lab(DaemonLab):
    def start(self) -> None:
        for addr in (SERVER, HAPROXY, NGINX, STUNNEL):
            for port in (25, 143, 465, 587, 2525, 10025, 10143, 10993):
                with contextlib.suppress(OSError), socket.create_connection((addr, port), 0.5, (LAB_CLIENT, 0)):
                    raise LabError(f"{addr}:{port} is already in use (a previous lab still running?)")
        self.work.chmod(0o755)  # Dovecot's and Postfix's children must traverse it
        (self.work / "logs").mkdir()
        self._certificate("mail.example.test")
        self._dovecot()
        self._postfix()
        self._haproxy()
        self._nginx()
        self._stunnel()

    def _dovecot(self) -> None:
        daemons.start_dovecot(self, SERVER, "probe", trusted=f"{HAPROXY} {PROBE_TRUSTED}", users={"alice": "not-used"},
                              ports=(143, 10143, 10993), source=LAB_CLIENT, services=f"""
service imap-login {{
  inet_listener imap {{
    address = {SERVER}
    port = 143
  }}
  inet_listener imap_haproxy {{
    address = {SERVER}
    port = 10143
    haproxy = yes
  }}
  inet_listener imaps {{
    address = {SERVER}
    port = 10993
    ssl = yes
  }}
}}
""")

    def _postfix(self) -> None:
        daemons.start_postfix(self, SERVER, {25: "", 10025: "-o smtpd_upstream_proxy_protocol=haproxy"}, f"""
myhostname = mail.example.test
smtpd_banner = $myhostname ESMTP Postfix
smtpd_tls_security_level = may
smtpd_tls_cert_file = {self.cert}
smtpd_tls_key_file = {self.key}
smtpd_upstream_proxy_timeout = 3s
""", LAB_CLIENT)

    def _haproxy(self) -> None:
        daemons.start_haproxy(self, HAPROXY, f"""
listen smtp_v1
    bind {HAPROXY}:25
    server postfix {SERVER}:10025 send-proxy
listen submission_v2
    bind {HAPROXY}:587
    server postfix {SERVER}:10025 send-proxy-v2
listen imap_plain
    bind {HAPROXY}:143
    server dovecot {SERVER}:143
listen smtp_waits_for_client
    bind {HAPROXY}:2525
    tcp-request inspect-delay {INSPECT_DELAY}s
    tcp-request content accept if {{ req.len gt 0 }}
    server postfix {SERVER}:10025 send-proxy-v2
""", LAB_CLIENT)

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
    proxy_connect_timeout 3s;
    server {{
        listen {NGINX}:25;
        proxy_pass {SERVER}:10025;
        proxy_protocol on;
    }}
    server {{
        listen {NGINX}:587 proxy_protocol;
        proxy_pass {SERVER}:10025;
        proxy_protocol on;
    }}
}}
""")
        argv = ["nginx", "-p", f"{prefix}/", "-e", str(error_log), "-c", str(prefix / "nginx.conf")]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True)
        if checked.returncode != 0:
            raise LabError(f"nginx rejected its configuration: {checked.stderr}")
        self._spawn([*argv, "-g", "daemon off;"], "nginx")
        for port in (25, 587):
            wait_listening(NGINX, port, "nginx", error_log)

    def _stunnel(self) -> None:
        config = self.work / "stunnel.conf"
        config.write_text(f"""
foreground = yes
pid =
[smtps]
accept = {STUNNEL}:465
connect = {SERVER}:10025
protocol = proxy
cert = {self.pem}
""")
        self._spawn(["stunnel4", str(config)], "stunnel")
        wait_listening(STUNNEL, 465, "stunnel", self.work / "logs" / "stunnel.stdout")


@contextlib.contextmanager
def running_lab():
    lab = Lab(Path(tempfile.mkdtemp(prefix="proxydiag-probe-lab.")))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(lab.work, ignore_errors=True)
