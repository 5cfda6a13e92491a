"""A Markdown table row per fuzzing log (tests/fuzz/run_long.sh writes them): inputs run,
rate, final corpus and coverage, and whether it ended on a crash.

    python3 tests/fuzz/summarise.py tests/fuzz/logs/*.log"""

from __future__ import annotations

import re
import sys
from pathlib import Path

STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", re.M)
STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
DONE = re.compile(r"^Done (\d+) (?:runs )?in (\d+) second", re.M)  # atheris's words, or libFuzzer's
CRASH = re.compile(r"Uncaught Python exception|ERROR: libFuzzer|Test unit written to (\S+)")


def summary(log: str) -> dict[str, str]:
    statuses = STATUS.findall(log)
    stats = dict(STAT.findall(log))
    done = DONE.search(log)
    last = statuses[-1] if statuses else ("", "", "", "", "")
    runs = stats.get("number_of_executed_units") or (done.group(1) if done else last[0])
    rate = stats.get("average_exec_per_sec") or (str(int(runs) // max(1, int(done.group(2)))) if done else "?")
    crash = CRASH.search(log)
    return {
        "inputs": f"{int(runs):,}" if runs else "?",
        "exec/s": rate,
        "corpus": f"{last[3]} ({last[4]})" if last[3] else "?",
        "cov": last[1] or "?",
        "ft": last[2] or "?",
        "seconds": done.group(2) if done else "?",
        "ended": "crash" if crash else ("done" if done else "running or stopped"),
    }


def main(paths: list[str]) -> None:
    columns = ["target", "inputs", "exec/s", "seconds", "corpus", "cov", "ft", "ended"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for path in paths:
        row = {"target": Path(path).stem, **summary(Path(path).read_text(errors="replace"))}
        print("| " + " | ".join(row[column] for column in columns) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
