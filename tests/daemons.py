"""What the test labs share: the programs they need, their loopback networks, and private
daemon instances started from throw-away configs in a temp dir (tests/probe_lab.py,
tests/hostile_lab.py, tests/sensor_lab.py, tests/test_check_lab.py...), stopped by process
id, never by name."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class LabError(RuntimeError):
    pass


def need(program: str) -> str:
    """The path of a program the test needs. A missing one fails the test (under CI too:
    never a skip); tests/run.sh installs every one."""
    path = shutil.which(program) or next(
        (f"{d}/{program}" for d in ("/usr/sbin", "/usr/bin", "/sbin") if Path(f"{d}/{program}").exists()), None)
    assert path, f"{program} is not installed (bash tests/run.sh installs it)"
    return path


# Each lab owns one /16 of 127.0.0.0/8, so labs started side by side (or left behind by a
# killed run) never share an address: test_labs_own_their_networks holds the table.
LAB_NETWORKS: dict[str, int] = {
    "configs": 30, "configs_more": 31, "configs_labels": 32, "check": 33, "snippets": 34, "probe": 40, "logs": 50, "sensor": 60,
    "hostile": 70, "captures": 80, "schema": 95,
}


def lab_address(lab: str, host: int, subnet: int = 0) -> str:
    """Address `host` of the lab's own network: lab_address("probe", 10) is 127.40.0.10."""
    return f"127.{LAB_NETWORKS[lab]}.{subnet}.{host}"


def wait_listening(addr: str, port: int, what: str, source: str, log: Path | None = None, seconds: float = 10.0) -> None:
    """Until something accepts on addr:port (the check connects from `source`, an address
    of the lab's own range)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((addr, port), 0.5, (source, 0)):
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise LabError(f"{what} is not listening on {addr}:{port} after {seconds} s\n{tail}")


@dataclass
class DaemonLab:
    work: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    postfix_dir: Path | None = None

    def stop(self) -> None:
        if self.postfix_dir is not None:
            subprocess.run(["postfix", "-c", str(self.postfix_dir), "stop"], capture_output=True)
        for pid in self._processes_working_here():  # Postfix's master and children, whatever `stop` did
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()

    def _processes_working_here(self) -> list[int]:
        """The processes whose working directory lies in this lab's directory (Postfix's
        master runs in its queue directory): ours, found by id."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if Path(os.readlink(entry / "cwd")).is_relative_to(self.work):
                        pids.append(int(entry.name))
        return pids

    def _spawn(self, argv: list[str], name: str) -> None:
        log = open(self.work / "logs" / f"{name}.stdout", "wb")  # noqa: SIM115 (lives as long as the process)
        self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def _certificate(self, hostname: str) -> None:
        self.cert, self.key = self.work / "cert.pem", self.work / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7", "-keyout", str(self.key),
             "-out", str(self.cert), "-subj", f"/CN={hostname}", "-addext", f"subjectAltName=DNS:{hostname}"],
            check=True, capture_output=True,
        )
        self.key.chmod(0o644)  # throw-away key; the daemons read it after dropping privileges
        self.pem = self.work / "combined.pem"
        self.pem.write_text(self.cert.read_text() + self.key.read_text())


POSTFIX_MAIN_CF = """
compatibility_level = 3.6
queue_directory = {work}/postfix-queue
data_directory = {work}/postfix-data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps =
alias_database =
smtpd_peername_lookup = no
maillog_file = {log}
maillog_file_prefixes = {work}
"""
POSTFIX_SERVICES = "".join(f"{name} unix - - n - {limit} {command}\n" for name, limit, command in (
    ("cleanup", "0", "cleanup"), ("qmgr", "1", "qmgr"), ("rewrite", "-", "trivial-rewrite"),
    ("bounce", "0", "bounce"), ("defer", "0", "bounce"), ("trace", "0", "bounce"), ("verify", "1", "verify"),
    ("proxymap", "-", "proxymap"), ("anvil", "1", "anvil"), ("scache", "1", "scache"), ("tlsmgr", "1", "tlsmgr"),
)) + "postlog unix-dgram n - n - 1 postlogd\n"


def start_postfix(lab: DaemonLab, address: str, listeners: dict[int, str], settings: str, source: str) -> Path:
    """A private Postfix instance, its queue and data below the lab's directory: main.cf is
    what every lab shares plus `settings`; one smtpd on `address` per port of `listeners`
    (port -> its `-o` options). Returns its log, once every port accepts (checked from
    `source`, an address of the lab's own range)."""
    config = lab.work / "postfix"
    config.mkdir()
    for sub in ("postfix-queue", "postfix-data"):
        (lab.work / sub).mkdir()
    shutil.chown(lab.work / "postfix-data", "postfix")
    log = lab.work / "logs" / "postfix.log"
    (config / "main.cf").write_text(POSTFIX_MAIN_CF.format(work=lab.work, log=log) + settings)
    (config / "master.cf").write_text(
        "".join(f"{address}:{port} inet n - n - - smtpd {options}".rstrip() + "\n" for port, options in listeners.items())
        + POSTFIX_SERVICES
    )
    lab.postfix_dir = config
    started = subprocess.run(["postfix", "-c", str(config), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        raise LabError(f"Postfix did not start: {started.stderr}")
    for port in listeners:
        wait_listening(address, port, "Postfix", source, log)
    return log


DOVECOT_CONF = """
protocols = imap
listen = {address}
base_dir = {base}/base
state_dir = {base}/state
instance_name = proxydiag-{instance}
log_path = {log}
default_login_user = dovenull
default_internal_user = dovecot
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{dh}
haproxy_trusted_networks = {trusted}
haproxy_timeout = 3 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {base}/passwd
}}
"""


def start_dovecot(lab: DaemonLab, address: str, instance: str, *, trusted: str, users: dict[str, str],
                  services: str, settings: str = "", ports: tuple[int, ...], source: str) -> Path:
    """A private Dovecot (IMAP) below the lab's directory, in the foreground: what every lab
    shares (TLS from the lab's certificate, passwd-file users, HAProxy headers trusted from
    `trusted`) plus `settings` and the `services` blocks. Returns its configuration once
    every port of `ports` accepts on `address` (checked from `source`)."""
    base = lab.work / "dovecot"
    for sub in ("base", "state"):
        (base / sub).mkdir(parents=True)
    log = lab.work / "logs" / "dovecot.log"
    dh = "ssl_dh = </usr/share/dovecot/dh.pem" if Path("/usr/share/dovecot/dh.pem").exists() else ""
    (base / "passwd").write_text("".join(f"{user}:{{PLAIN}}{password}:65534:65534::{base}::\n"
                                         for user, password in users.items()))
    config = base / "dovecot.conf"
    config.write_text(DOVECOT_CONF.format(address=address, base=base, instance=instance, log=log, cert=lab.cert,
                                          key=lab.key, dh=dh, trusted=trusted) + settings + services)
    lab._spawn(["dovecot", "-c", str(config), "-F"], "dovecot")
    for port in ports:
        wait_listening(address, port, "Dovecot", source, log)
    return config


HAPROXY_GLOBAL = """
global
    maxconn {maxconn}
defaults
    mode tcp
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    source {address}
"""


def start_haproxy(lab: DaemonLab, address: str, proxies: str, source: str, maxconn: int = 64,
                  defaults: str = "") -> Path:
    """A private HAProxy in the foreground: the labs' global and defaults sections (its
    connections to servers come from `address`) plus `defaults` lines, then `proxies`.
    Checked by `haproxy -c` first; returns its configuration once every port it binds on
    `address` accepts (checked from `source`)."""
    config = lab.work / "haproxy.cfg"
    config.write_text(HAPROXY_GLOBAL.format(maxconn=maxconn, address=address) + defaults + proxies)
    checked = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise LabError(f"HAProxy rejected its configuration: {checked.stdout}{checked.stderr}")
    lab._spawn(["haproxy", "-db", "-f", str(config)], "haproxy")
    for port in sorted({int(port) for port in re.findall(rf"^\s*bind {re.escape(address)}:(\d+)", proxies, re.M)}):
        wait_listening(address, port, "HAProxy", source, lab.work / "logs" / "haproxy.stdout")
    return config


def wait_capturing(sniffer: subprocess.Popen, seconds: float = 30.0) -> None:
    """Until sniff says it captures (it does once tcpdump listens): no guess of how long
    starting takes on a loaded machine."""
    said = ""
    deadline = time.monotonic() + seconds
    assert sniffer.stderr is not None
    while time.monotonic() < deadline and select.select([sniffer.stderr], [], [], deadline - time.monotonic())[0]:
        line = sniffer.stderr.readline()
        said += line
        if "proxydiag: capturing on" in line:
            return
        if not line:
            break
    raise AssertionError(f"sniff did not start capturing within {seconds} s: {said}")
