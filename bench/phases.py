"""Where `analyze`'s CPU goes: each phase run on its own, in one process, cumulatively.

    python bench/phases.py CAPTURE [--runs 3]

1. records: the capture's records read (`capture/sources.py`), nothing else;
2. + tracking: link/IP/TCP decoding, the flow table, reassembly (`packet.py`, `flows.py`);
3. + describing: each finished connection described (`facts/describe.py`: PROXY parser,
   recognisers);
4. the whole `analyze --format json` in this process (judging and the JSON writer too).

Each phase's CPU (`time.process_time`) is the minimum over the runs; the differences
between lines are what each stage adds.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxydiag.capture.flows import FlowTable  # noqa: E402
from proxydiag.capture.sources import open_capture  # noqa: E402
from proxydiag.facts.describe import describe  # noqa: E402


def records_only(path: str) -> None:
    with open_capture(path) as reader:
        for _ in reader:
            pass


def tracked(path: str, on_finished: Callable) -> None:
    table = FlowTable(on_finished)
    with open_capture(path) as reader:
        table.consume(0, reader)
    table.flush()


def whole_analyze(path: str) -> None:
    from proxydiag.cli import app

    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        try:
            app(["analyze", path, "--format", "json", "--jobs", "1", "--fail-on", "never", "-o", "/dev/null"])
        except SystemExit:
            pass


def cpu_of(run: Callable[[], None], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = args.capture
    phases = (
        ("records", lambda: records_only(path)),
        ("+ tracking", lambda: tracked(path, lambda conn: None)),
        ("+ describing", lambda: tracked(path, describe)),
        ("whole analyze --format json", lambda: whole_analyze(path)),
    )
    print("| phase | CPU (min of runs) |\n|---|---:|")
    for name, run in phases:
        print(f"| {name} | {cpu_of(run, args.runs):.2f} s |", flush=True)


if __name__ == "__main__":
    main()
