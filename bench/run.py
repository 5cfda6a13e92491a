"""Benchmark `proxydiag analyze` against bare dpkt record iteration and tshark, in one run.

    python bench/run.py [CAPTURE] [--megabytes N] [--no-tshark]

Without CAPTURE a synthetic capture is written first (bench/synthetic.py). Prints wall
time and peak memory (max RSS of a child process) for each contender.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

DPKT_ITERATION = "import dpkt,sys\nfor _ in dpkt.pcap.UniversalReader(open(sys.argv[1],'rb')): pass"


def measure(command: list[str]) -> tuple[float, float]:
    """(seconds, peak MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="?", type=Path)
    parser.add_argument("--megabytes", type=int, default=600)
    parser.add_argument("--no-tshark", action="store_true")
    args = parser.parse_args()
    capture = args.capture
    scratch = None
    if capture is None:
        scratch = tempfile.TemporaryDirectory()
        capture = Path(scratch.name) / "synthetic.pcap"
        subprocess.run([sys.executable, str(HERE / "synthetic.py"), str(capture), "--megabytes", str(args.megabytes)], check=True)
    size = os.path.getsize(capture) / 2**20
    print(f"capture: {capture} ({size:.0f} MiB)")
    contenders = {
        "dpkt record iteration": [sys.executable, "-c", DPKT_ITERATION, str(capture)],
        "proxydiag analyze --format json": [sys.executable, "-m", "proxydiag", "analyze", "--format", "json", "--fail-on", "never", str(capture)],
    }
    if not args.no_tshark and shutil.which("tshark"):
        contenders["tshark -Y proxy (heuristics first)"] = [
            "tshark", "-r", str(capture), "-o", "tcp.try_heuristic_first:TRUE", "-Y", "proxy", "-T", "fields", "-e", "frame.number",
        ]
    results = {}
    for name, command in contenders.items():
        # ru_maxrss of children is a running maximum: measure each in its own process tree.
        wrapper = [sys.executable, "-c",
                   "import resource,subprocess,sys,time;t=time.perf_counter();"
                   "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
                   "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)", *command]
        out = subprocess.run(wrapper, check=True, capture_output=True, text=True).stdout.split()
        results[name] = (float(out[0]), float(out[1]))
        print(f"{name:40s} {results[name][0]:8.2f} s  {results[name][1]:8.0f} MiB peak")
    base = results["dpkt record iteration"][0]
    ours = results["proxydiag analyze --format json"][0]
    print(f"proxydiag / dpkt iteration: {ours / base:.2f}x")
    tshark = next((value for key, value in results.items() if key.startswith("tshark")), None)
    if tshark:
        print(f"tshark / proxydiag: {tshark[0] / ours:.1f}x")
    if scratch:
        scratch.cleanup()


if __name__ == "__main__":
    main()
