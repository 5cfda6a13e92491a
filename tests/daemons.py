"""What the test labs share: private daemon instances started from throw-away configs in
a temp dir (tests/probe_lab.py, tests/hostile_lab.py), stopped by process id, never by
name."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class LabError(RuntimeError):
    pass


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
