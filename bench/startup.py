"""Start-up and small captures: `python3 -m proxydiag ARGS` from one or more source trees,
interleaved run by run, with the median and minimum wall and CPU (user + system) time of each.

    python bench/startup.py --tree before=/tmp/old-checkout --tree after=. --runs 15
    python bench/startup.py --tree after=. -- analyze captures/haproxy-v2-smtp.pcap -o /tmp/r.txt

Without a command after `--` it times the commands of bench/README.md's start-up table.
Bytecode caches are written first (PYTHONDONTWRITEBYTECODE unset): users' installs have them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    ("analyze small capture", ["analyze", "captures/haproxy-v2-smtp.pcap", "-o", "/tmp/proxydiag-startup.txt"]),
    ("analyze small, json", ["analyze", "captures/haproxy-v2-smtp.pcap", "--format", "json", "-o",
                             "/tmp/proxydiag-startup.json"]),
    ("decode", ["decode", "0d0a0d0a000d0a515549540a2111000ccb007107c000020a9c40001900"]),
    ("explain PD101", ["explain", "PD101"]),
    ("rules", ["rules"]),
)


def environment(tree: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    return env


def timed(tree: Path, args: list[str]) -> tuple[float, float]:
    """(wall, user + system CPU) seconds of one run, from the rusage of that child alone."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "proxydiag", *args], cwd=tree, env=environment(tree),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    trees = {name: Path(path).resolve() for name, path in (item.split("=", 1) for item in args.tree)}
    commands = [(" ".join(args.command), args.command)] if args.command else list(COMMANDS)
    for tree in trees.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "proxydiag")], check=True,
                       env=environment(tree), stdout=subprocess.DEVNULL)
    print("| command | " + " | ".join(f"{name}: wall median (min) / CPU median (min)" for name in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for label, command in commands:
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                samples[name].append(timed(tree, command))
        cells = []
        for runs in samples.values():
            walls, cpus = [run[0] for run in runs], [run[1] for run in runs]
            cells.append(f"{statistics.median(walls) * 1000:.0f} ms ({min(walls) * 1000:.0f}) / "
                         f"{statistics.median(cpus) * 1000:.0f} ms ({min(cpus) * 1000:.0f})")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
