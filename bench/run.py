"""Benchmark `proxydiag analyze` against bare dpkt record iteration and tshark, in one run.

    python bench/run.py CAPTURE...                    # existing captures
    python bench/run.py --generate sessions --megabytes 153
    python bench/run.py --generate syn-flood --no-tshark --timeout 300

Each contender runs in its own process on the same file: dpkt record iteration (the floor:
reading the records and nothing else), `proxydiag analyze --format json` and the rich
report (each written to a file), and `tshark -o tcp.try_heuristic_first:TRUE -Y proxy`.
Wall time and peak memory are measured per process: the peak is the max RSS in the
rusage that os.wait4 returns for that one child (RUSAGE_CHILDREN would hold the largest
of every earlier child too). With a truth file beside the capture (bench/synthetic.py
writes one), the JSON report's counts are checked against it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from synthetic import generate, truth_path  # noqa: E402

DPKT_ITERATION = "import dpkt,sys\nfor _ in dpkt.pcap.UniversalReader(open(sys.argv[1],'rb')): pass"
CONTENDERS = ("dpkt", "json", "rich", "tshark", "json-j1", "json-j2")
DEFAULT_CONTENDERS = ("dpkt", "json", "rich", "tshark")  # json and rich with --jobs auto


@dataclass
class Result:
    capture: str
    contender: str
    seconds: float
    cpu_seconds: float  # user + system of the process: steadier than wall time on a shared machine
    peak_mib: float
    exit_code: int  # -9 when killed at the timeout
    output_bytes: int | None = None
    connections: int | None = None  # from the JSON report's summary
    with_proxy_header: int | None = None  # from the JSON summary; for tshark, frames matching -Y proxy


def run_one(command: list[str], output: Path, timeout: float | None) -> tuple[float, float, float, int]:
    """(seconds, CPU seconds, peak MiB, exit code) of one child process, its stdout sent to `output`.
    The rusage of wait4 holds the child's own and that of the workers it waited for: CPU
    summed over them, peak RSS the largest single process's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with output.open("wb") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL, env=env)
        killer = threading.Timer(timeout, os.kill, (child.pid, signal.SIGKILL)) if timeout else None
        if killer:
            killer.start()
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        if killer:
            killer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode


def commands(capture: Path, scratch: Path) -> dict[str, tuple[list[str], Path, Path]]:
    """Each contender's command line, where its stdout goes and where its report is."""
    analyze = [sys.executable, "-m", "proxydiag", "analyze", "--fail-on", "never", str(capture)]
    json_out, rich_out, stdout = scratch / "report.json", scratch / "report.txt", scratch / "stdout"
    dpkt_out, tshark_out = scratch / "dpkt.out", scratch / "tshark.out"
    return {
        "dpkt": ([sys.executable, "-c", DPKT_ITERATION, str(capture)], dpkt_out, dpkt_out),
        "json": ([*analyze, "--format", "json", "-o", str(json_out)], stdout, json_out),
        "json-j1": ([*analyze, "--jobs", "1", "--format", "json", "-o", str(json_out)], stdout, json_out),
        "json-j2": ([*analyze, "--jobs", "2", "--format", "json", "-o", str(json_out)], stdout, json_out),
        "rich": ([*analyze, "--format", "rich", "-o", str(rich_out)], stdout, rich_out),
        "tshark": (["tshark", "-r", str(capture), "-o", "tcp.try_heuristic_first:TRUE", "-Y", "proxy",
                    "-T", "fields", "-e", "frame.number"], tshark_out, tshark_out),
    }


def json_summary(report: Path) -> dict:
    """The summary line of a JSON report (it comes before the connections: no need to read them)."""
    try:
        with report.open() as handle:
            for line in handle:
                if line.startswith('  "summary": '):
                    return json.loads(line.split(": ", 1)[1].rstrip().rstrip(","))
    except (OSError, ValueError):
        pass
    return {}


def bench(capture: Path, contenders: list[str], timeout: float | None) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="proxydiag-bench-") as scratch:
        plan = commands(capture, Path(scratch))
        for name in contenders:
            command, stdout, output = plan[name]
            output.unlink(missing_ok=True)
            seconds, cpu, peak, code = run_one(command, stdout, timeout)
            result = Result(capture.name, name, seconds, cpu, peak, code,
                            output_bytes=output.stat().st_size if output.exists() else None)
            if name.startswith("json"):
                summary = json_summary(output)
                result.connections = summary.get("connections")
                result.with_proxy_header = summary.get("with_proxy_header")
            elif name == "tshark" and code == 0:
                result.with_proxy_header = sum(1 for _ in output.open())  # one line per frame with a header
            results.append(result)
            print(format_row(result, results), flush=True)
    return results


def format_row(result: Result, so_far: list[Result]) -> str:
    base = next((r.seconds for r in so_far if r.contender == "dpkt" and r.capture == result.capture), None)
    ratio = f"{result.seconds / base:.2f}x" if base else ""
    status = "" if result.exit_code == 0 else (" killed at timeout" if result.exit_code == -9 else f" exit {result.exit_code}")
    counts = f" {result.connections} connections," if result.connections is not None else ""
    counts += f" {result.with_proxy_header} with header" if result.with_proxy_header is not None else ""
    size = f" output {result.output_bytes / 2**20:.1f} MiB" if result.output_bytes else ""
    return (f"{result.capture:28s} {result.contender:7s} {result.seconds:8.2f} s {ratio:>7s} (cpu {result.cpu_seconds:7.2f} s) "
            f"{result.peak_mib:7.0f} MiB{size}{counts}{status}")


def markdown_table(results: list[Result]) -> str:
    """The results as the table of bench/README.md."""
    lines = ["| capture | contender | wall | CPU | vs dpkt (wall) | peak RSS | report |", "|---|---|---:|---:|---:|---:|---|"]
    for result in results:
        base = next((r.seconds for r in results if r.contender == "dpkt" and r.capture == result.capture), None)
        ratio = f"{result.seconds / base:.1f}x" if base else ""
        if result.exit_code == -9:
            ratio += " (killed at timeout)"
        report = f"{result.output_bytes / 2**20:.1f} MiB" if result.output_bytes and result.contender != "dpkt" else ""
        if result.connections is not None:
            report += f", {result.connections} connections"
        lines.append(f"| {result.capture} | {result.contender} | {result.seconds:.1f} s | {result.cpu_seconds:.1f} s | "
                     f"{ratio} | {result.peak_mib:.0f} MiB | {report} |")
    return "\n".join(lines)


def check_truth(capture: Path, results: list[Result]) -> list[str]:
    """Disagreements between the JSON report and the truth written beside the capture."""
    try:
        truth = json.loads(truth_path(capture).read_text())
    except (OSError, ValueError):
        return []
    problems = []
    for result in results:
        wrong = result.with_proxy_header != truth["proxied_connections"]
        if result.contender.startswith("json") and result.exit_code == 0 and wrong:
            problems.append(f"{capture.name}: {result.with_proxy_header} connections with a header in the report, "
                            f"{truth['proxied_connections']} written")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="*", type=Path)
    parser.add_argument("--generate", choices=("sessions", "syn-flood", "tlv-amplification"),
                        help="write a synthetic capture first (bench/synthetic.py) and benchmark it")
    parser.add_argument("--megabytes", type=float, default=153, help="size of a generated sessions capture")
    parser.add_argument("--syns", type=int, default=1_000_000, help="SYNs of a generated syn-flood capture")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where generated captures go (never the repository)")
    parser.add_argument("--only", default=",".join(DEFAULT_CONTENDERS), help=f"contenders, of {','.join(CONTENDERS)}")
    parser.add_argument("--no-tshark", action="store_true")
    parser.add_argument("--timeout", type=float, default=None, help="kill a contender after this many seconds")
    parser.add_argument("--results", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    contenders = [name for name in args.only.split(",") if name in CONTENDERS]
    if args.no_tshark or not shutil.which("tshark"):
        contenders = [name for name in contenders if name != "tshark"]
    captures = list(args.captures)
    if args.generate:
        args.workdir.mkdir(parents=True, exist_ok=True)
        capture = args.workdir / f"proxydiag-bench-{args.generate}.pcap"
        generate(capture, args.generate, megabytes=args.megabytes, syns=args.syns)
        captures.append(capture)
    if not captures:
        parser.error("give a capture or --generate KIND")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    results, problems = [], []
    for capture in captures:
        print(f"{capture} ({capture.stat().st_size / 2**20:.0f} MiB)")
        found = bench(capture, contenders, args.timeout)
        results.extend(found)
        problems.extend(check_truth(capture, found))
    print(markdown_table(results))
    if args.results:
        args.results.write_text(json.dumps([asdict(result) for result in results], indent=2) + "\n")
    for problem in problems:
        print(f"MISMATCH {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
