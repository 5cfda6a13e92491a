"""A private HAProxy in front of a private Postfix on 127.60.0.0/16, for `sniff` as a
sensor (tests/test_sensor.py), and a private Prometheus to scrape it.

  SERVER  127.60.0.10  Postfix (TLS offered) 10025 and 10587, both with
                       smtpd_upstream_proxy_protocol = haproxy
  HAPROXY 127.60.0.20  25 -> 10025 send-proxy-v2 (healthy),
                       587 -> 10587 with no header (broken: Postfix waits for one)
  CLIENT  127.60.0.1   swaks and the traffic generator; the exporter listens here
  PROMETHEUS 127.60.0.2
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.daemons import DaemonLab, LabError, lab_address, start_haproxy, start_postfix

SERVER, HAPROXY, CLIENT, PROMETHEUS = (lab_address("sensor", host) for host in (10, 20, 1, 2))
HEALTHY, BROKEN = f"{SERVER}:10025", f"{SERVER}:10587"  # the listeners behind HAProxy's 25 and 587
# Postfix waits longer for a header than the clients for a greeting: a client's QUIT then
# always reaches Postfix as the would-be header (PD101), never Postfix's timeout first (PD401).
PROXY_TIMEOUT = 10
CLIENT_WAIT = 2


def free_port(addr: str) -> int:
    with socket.socket() as probe:
        probe.bind((addr, 0))
        return probe.getsockname()[1]


def wait_for(ready, what: str, seconds: float = 15.0, log: Path | None = None):
    """Poll `ready()` until it returns something true; its value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            value = ready()
            if value:
                return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise LabError(f"{what} after {seconds} s\n{tail}")


def listening(addr: str, port: int) -> bool:
    with socket.create_connection((addr, port), 0.5, (CLIENT, 0)):
        return True


class Lab(DaemonLab):
    """tests/daemons.py's lab (stopped by process id) with this lab's daemons."""

    def start(self) -> None:
        for addr, port in ((SERVER, 10025), (SERVER, 10587), (HAPROXY, 25), (HAPROXY, 587)):
            with contextlib.suppress(OSError):
                if listening(addr, port):
                    raise LabError(f"{addr}:{port} is already in use (a previous lab still running?)")
        self.work.chmod(0o755)  # Postfix's children must traverse it
        (self.work / "logs").mkdir()
        self._certificate()
        self._postfix()
        self._haproxy()

    def spawn(self, argv: list[str], name: str, cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.work / "logs" / f"{name}.log", "wb")  # noqa: SIM115 (lives as long as the process)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        self.processes.append(process)
        return process

    def _certificate(self) -> None:
        self.cert, self.key = self.work / "cert.pem", self.work / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "7", "-keyout", str(self.key), "-out", str(self.cert), "-subj", "/CN=mail.example.test"],
            check=True, capture_output=True,
        )
        self.key.chmod(0o644)  # throw-away key; Postfix reads it after dropping privileges

    def _postfix(self) -> None:
        proxied = "-o smtpd_upstream_proxy_protocol=haproxy"
        start_postfix(self, SERVER, {10025: proxied, 10587: proxied}, f"""
myhostname = mail.example.test
smtpd_banner = $myhostname ESMTP Postfix
smtpd_tls_security_level = may
smtpd_tls_cert_file = {self.cert}
smtpd_tls_key_file = {self.key}
smtpd_upstream_proxy_timeout = {PROXY_TIMEOUT}s
smtpd_client_connection_rate_limit = 0
""", CLIENT)

    def _haproxy(self) -> None:
        start_haproxy(self, HAPROXY, f"""
listen mx_v2
    bind {HAPROXY}:25
    server postfix {SERVER}:10025 send-proxy-v2
listen submission_no_header
    bind {HAPROXY}:587
    server postfix {SERVER}:10587
""", CLIENT, maxconn=512)


@contextlib.contextmanager
def running_lab():
    lab = Lab(Path(tempfile.mkdtemp(prefix="proxydiag-sensor-lab.")))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(lab.work, ignore_errors=True)


def swaks(port: int, timeout: float = 10) -> subprocess.CompletedProcess:
    """One SMTP session through HAProxy's PORT, from CLIENT."""
    return subprocess.run(
        ["swaks", "--server", HAPROXY, "--port", str(port), "--local-interface", CLIENT, "--from", "alice@example.test",
         "--to", "bob@example.test", "--quit-after", "EHLO", "--timeout", str(CLIENT_WAIT)],
        capture_output=True, text=True, timeout=timeout,
    )


def smtp_session(port: int) -> None:
    """A short SMTP session through HAProxy's PORT with plain sockets (the generator's,
    cheaper than a swaks process): greeting, EHLO, QUIT; with no greeting within
    CLIENT_WAIT, QUIT at once, as swaks does."""
    with socket.create_connection((HAPROXY, port), CLIENT_WAIT, (CLIENT, 0)) as conn:
        with contextlib.suppress(TimeoutError):
            conn.recv(4096)
            conn.sendall(b"EHLO generator.example.test\r\n")
            conn.recv(4096)
        with contextlib.suppress(OSError):
            conn.sendall(b"QUIT\r\n")
            while conn.recv(4096):
                pass


@dataclass
class Prometheus:
    """Debian's prometheus, started from a throw-away config that scrapes `target` every
    second and evaluates `rules` every second."""

    lab: Lab
    target: str
    rules: str

    def start(self) -> None:
        home = self.lab.work / "prometheus"
        home.mkdir()
        (home / "rules.yml").write_text(self.rules)
        (home / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(home / "rules.yml")],
            "scrape_configs": [{"job_name": "proxydiag", "static_configs": [{"targets": [self.target]}]}],
        }))
        self.port = free_port(PROMETHEUS)
        self.lab.spawn(["prometheus", f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
                        f"--web.listen-address={PROMETHEUS}:{self.port}"], "prometheus", cwd=home)
        wait_for(lambda: self.api("targets")["activeTargets"], "Prometheus does not answer", 30,
                 self.lab.work / "logs" / "prometheus.log")

    def api(self, path: str, **query: str):
        url = f"http://{PROMETHEUS}:{self.port}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
        if body.get("status") != "success":
            raise ValueError(body)
        return body["data"]

    def values(self, expression: str) -> dict[tuple, float]:
        """The instant vector of `expression`: label values (sorted by label name) -> value."""
        result = self.api("query", query=expression)["result"]
        return {tuple(sorted((k, v) for k, v in item["metric"].items() if k not in ("__name__", "instance", "job"))):
                float(item["value"][1]) for item in result}
