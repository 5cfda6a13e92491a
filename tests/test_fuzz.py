"""The fuzz targets in bounded mode: each runs a few thousand coverage-guided inputs
under atheris (tests/fuzz/run_long.sh runs them for millions). A crash or a broken
property (a raw control byte, a secret or an original address in a report, invalid
JSON) fails the test with libFuzzer's report and the input that did it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

REPO = Path(__file__).resolve().parent.parent
REGRESSIONS = sorted((REPO / "tests" / "fuzz" / "regressions").glob("*.bin"))
RUNS = {"report": 300, "stalwart": 1000, "recognise": 1500}  # the slow ones get fewer


@pytest.mark.fuzz
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_bounded(target, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), PROXYDIAG_FUZZ_DIR=str(tmp_path), PROXYDIAG_FUZZ_SCRATCH=str(tmp_path))
    runs = RUNS.get(target, 2000)
    result = subprocess.run(
        [sys.executable, str(REPO / "tests/fuzz/fuzz.py"), target, f"-atheris_runs={runs}", "-max_total_time=20"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )
    tail = "\n".join(result.stderr.splitlines()[-40:])
    assert result.returncode == 0, tail
    assert "Done" in result.stderr, tail
    crashes = list((tmp_path / "crashes" / target).iterdir())
    assert not crashes, f"crash inputs written: {crashes}"


def target_of(regression: Path) -> str:
    """A regression is named TARGET-what-it-found.bin."""
    return max((name for name in TARGETS if regression.name.startswith(name + "-")), key=len)


@pytest.mark.parametrize("regression", REGRESSIONS, ids=[path.stem for path in REGRESSIONS])
def test_fuzz_regression_replays(regression, tmp_path, monkeypatch):
    """Every input a campaign found (tests/fuzz/RESULTS.md) runs clean through its target."""
    from tests.fuzz import targets

    monkeypatch.setattr(targets, "_SCRATCH", tmp_path / "scratch")
    TARGETS[target_of(regression)](regression.read_bytes())
