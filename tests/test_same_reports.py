"""Speed work changes no report: `analyze` writes, byte for byte, what the code before it
wrote (main at 765228a, before issue 31) on every shipped capture, every hostile capture
and the benchmark's generated kinds, as JSON and as the verbose rich report.

tests/golden/reports.json holds the SHA-256 of each report. It was written by the code of
765228a; regenerate it only after a deliberate change of a report, with
`PYTHONPATH=$PWD python3 tests/test_same_reports.py` (and say so in the commit)."""

from __future__ import annotations

import hashlib
import json
import sys
from contextlib import chdir
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proxydiag.cli import app

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "reports.json"
sys.path.insert(0, str(ROOT / "bench"))
from synthetic import generate  # noqa: E402

FORMATS = {"json": ["--format", "json"], "rich-v": ["--format", "rich", "-v"]}
# Small enough for the fast tier, each kind of the benchmark: identical openings repeated,
# half-open flows evicted around real sessions, long headers.
GENERATED = {
    "bench-sessions.pcap": {"kind": "sessions", "megabytes": 2.0},
    "bench-syn-flood.pcap": {"kind": "syn-flood", "syns": 3_000, "sessions": 40},
    "bench-tlv-amplification.pcap": {"kind": "tlv-amplification", "sessions": 12, "tlvs": 300},
}


def shipped_captures() -> list[Path]:
    hostile = ROOT / "tests" / "hostile" / "files"
    return sorted([*(ROOT / "captures").glob("*.pcap*"), *hostile.glob("*.pcap*")])


def name_of(capture: Path) -> str:
    return str(capture.relative_to(ROOT)) if capture.is_relative_to(ROOT) else capture.name


def report_digests(capture: Path, workdir: Path) -> Iterator[tuple[str, str]]:
    """(format, SHA-256 of the report) for each format, the capture named as a user in its
    directory names it (the report quotes the name)."""
    for fmt, args in FORMATS.items():
        out = workdir / f"report.{fmt}"
        out.unlink(missing_ok=True)
        with chdir(capture.parent):
            result = CliRunner().invoke(app, ["analyze", capture.name, *args, "-o", str(out), "--fail-on", "never",
                                              "--jobs", "1"])
        text = out.read_bytes() if out.exists() else b""
        said = f"exit {result.exit_code}\n{result.output}\n".encode()
        yield fmt, hashlib.sha256(said + text).hexdigest()


def all_digests(workdir: Path) -> dict[str, dict[str, str]]:
    digests = {}
    for capture in shipped_captures():
        digests[name_of(capture)] = dict(report_digests(capture, workdir))
    for name, spec in GENERATED.items():
        generate(workdir / name, **spec)
        digests[name] = dict(report_digests(workdir / name, workdir))
    return digests


@pytest.fixture(scope="module")
def golden() -> dict[str, dict[str, str]]:
    return json.loads(GOLDEN.read_text())


def test_every_shipped_capture_has_its_golden_report(golden):
    assert sorted(name_of(capture) for capture in shipped_captures()) == sorted(
        name for name in golden if name not in GENERATED)


@pytest.mark.parametrize("capture", shipped_captures(), ids=name_of)
def test_shipped_capture_reports_are_unchanged(capture, golden, tmp_path):
    assert dict(report_digests(capture, tmp_path)) == golden[name_of(capture)]


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_capture_reports_are_unchanged(name, golden, tmp_path):
    generate(tmp_path / name, **GENERATED[name])
    assert dict(report_digests(tmp_path / name, tmp_path)) == golden[name]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(all_digests(Path(workdir)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
