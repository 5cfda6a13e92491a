"""Under CI=true the property tests explore: each run draws other examples (no fixed,
derandomised set), and the run's seed is printed so a failure can be replayed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROPERTY = '''
import os
from hypothesis import given, settings, strategies as st

@given(st.binary(min_size=8, max_size=8))
def test_default_settings(data):
    with open(os.environ["DRAWN"], "a") as out:
        out.write("default " + data.hex() + "\\n")

@settings(max_examples=20)  # as the suite's tests decorate theirs
@given(st.integers(min_value=0, max_value=2**64))
def test_decorated_settings(number):
    with open(os.environ["DRAWN"], "a") as out:
        out.write(f"decorated {number}\\n")
'''


def _run(tmp_path: Path, name: str, *extra: str) -> tuple[set[str], str]:
    drawn = tmp_path / f"{name}.txt"
    env = dict(os.environ, CI="true", PYTHONPATH=str(REPO), DRAWN=str(drawn))
    env.pop("PROXYDIAG_HYPOTHESIS_SEED", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", str(tmp_path / "test_drawn.py"),
         "--rootdir", str(tmp_path), *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return set(drawn.read_text().splitlines()), result.stdout


def test_property_tests_explore_under_ci(tmp_path):
    (tmp_path / "test_drawn.py").write_text(PROPERTY)
    first, header = _run(tmp_path, "first")
    second, _ = _run(tmp_path, "second")
    for kind in ("default", "decorated"):
        one = {line for line in first if line.startswith(kind)}
        two = {line for line in second if line.startswith(kind)}
        assert len(one) > 5 and one != two, f"{kind}: two CI runs drew the same examples"
    seed = re.search(r"hypothesis seed: (\d+)", header)
    assert seed, header
    replayed, _ = _run(tmp_path, "replayed", f"--hypothesis-seed={seed.group(1)}")
    assert replayed == first  # the printed seed replays the run
