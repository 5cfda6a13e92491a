"""Can `proxydiag sniff` keep up? A bounded traffic generator on loopback (SMTP-like
ping-pong over a few connections, paced to a packet rate) while `sniff -i lo` captures it;
reports the packets captured, the kernel's drops, sniff's CPU time and its resident
memory sampled over the run (first half against second half).

    python bench/sniff_rate.py --rate 50000 --seconds 600   # the issue's target
    python bench/sniff_rate.py --rate 50000 --seconds 60

Needs root (capturing). Uses 127.98.0.91 (`--address`) and ports 12450-12457."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ADDRESS = "127.98.0.91"
FIRST_PORT = 12450
PACKETS_PER_EXCHANGE = 2  # a command and its reply (each acknowledges the other)


def serve(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(b"220 bench ESMTP\r\n")
        while conn.recv(64):
            conn.sendall(b"250 2.0.0 Ok\r\n")


def talk(address: str, port: int, exchanges_per_second: float, until: float) -> int:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen()
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    done = 0
    with socket.create_connection((address, port)) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.recv(64)
        started = time.monotonic()
        while (now := time.monotonic()) < until:
            behind = int((now - started) * exchanges_per_second) - done
            for _ in range(max(behind, 0)):
                client.sendall(b"NOOP\r\n")
                client.recv(64)
                done += 1
            if behind <= 0:
                time.sleep(0.0005)
    listener.close()
    return done


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50_000, help="packets per second to generate")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--address", default=ADDRESS, help="a loopback address both ends use")
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp()) / "report.json"
    ports = range(FIRST_PORT, FIRST_PORT + args.connections)
    sniffer = subprocess.Popen(
        [sys.executable, "-m", "proxydiag", "sniff", "-i", "lo", "-f",
         f"host {args.address} and tcp portrange {ports[0]}-{ports[-1]}", "--duration", str(args.seconds + 8),
         "--format", "json", "-o", str(report), "--fail-on", "never"], stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    until = time.monotonic() + args.seconds
    per_connection = args.rate / PACKETS_PER_EXCHANGE / args.connections
    results: list[int] = []
    workers = [threading.Thread(target=lambda port=port: results.append(talk(args.address, port, per_connection, until)))
               for port in ports]
    for worker in workers:
        worker.start()
    samples = []
    while any(worker.is_alive() for worker in workers):
        samples.append(rss_kib(sniffer.pid))
        time.sleep(1)
    _, status, usage = os.wait4(sniffer.pid, 0)
    sniffer.returncode = os.waitstatus_to_exitcode(status)
    document = json.loads(report.read_text())
    half = len(samples) // 2 or 1
    print(json.dumps({
        "target_packets_per_second": args.rate,
        "seconds": args.seconds,
        "exchanges": sum(results),
        "generated_packets_per_second": round(sum(results) * PACKETS_PER_EXCHANGE / args.seconds),
        "captured_packets": document["inputs"][0]["packets"],
        "kernel_drops": document["inputs"][0]["damaged"] or "none",
        "sniff_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "rss_kib_first_half_max": max(samples[:half], default=0),
        "rss_kib_second_half_max": max(samples[half:], default=0),
        "sniff_peak_rss_kib": usage.ru_maxrss,
    }, indent=2))


if __name__ == "__main__":
    main()
