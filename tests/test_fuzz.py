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


@pytest.mark.parametrize("target", ["logs", "probe_replies", "proxy_config"])
def test_fuzz_target_runs_only_instrumented_modules(target):
    """What a target runs is imported under atheris's instrumentation (fuzz.py): a module
    first imported while the target runs is code the fuzzer cannot see (the logs and
    probe_replies campaigns before session 7 ran blind to their readers)."""
    script = f"""
import sys
sys.argv = ["fuzz.py", {target!r}]
import tests.fuzz.fuzz
from tests.fuzz.seeds import seeds
from tests.fuzz.targets import TARGETS
inputs = seeds({target!r})
before = set(sys.modules)
for data in inputs:
    try:
        TARGETS[{target!r}](data)
    except AssertionError:
        pass
print(sorted(name for name in set(sys.modules) - before if name.startswith("proxydiag.")
             and not name.startswith("proxydiag.report")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"imported outside the instrumentation: {result.stdout}"
