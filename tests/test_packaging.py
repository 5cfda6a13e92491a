"""The package as users install it: a wheel, installed elsewhere, run from another
directory. The finding pages travel inside it (importlib.resources), so `explain`,
`rules` and the fixes in reports work however it was installed."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (built,) = out.glob("proxydiag-*.whl")
    return built


def test_the_wheel_carries_every_finding_page(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    pages = {Path(name).stem for name in names if name.startswith("proxydiag/findings/PD") and name.endswith(".md")}
    shipped = {path.stem for path in (REPO / "proxydiag" / "findings").glob("PD*.md")}
    assert pages == shipped and len(shipped) >= 40
    assert "proxydiag/py.typed" in names
    assert {"proxydiag/report/templates/report.html", "proxydiag/report/templates/report.css"} <= set(names)


def test_the_wheel_carries_the_json_schema(wheel):
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("proxydiag/report/schema.json")
    assert shipped == (REPO / "proxydiag" / "report" / "schema.json").read_bytes()


def borrow_site_packages(python: str) -> None:
    """Let a new venv import this interpreter's packages (typer, rich...), whether this
    interpreter is the system's or itself a venv's: `venv --system-site-packages` made from a
    venv's interpreter sees the base interpreter's packages, not the running venv's. The
    borrowed directories come after the venv's own, and their .pth files are not run, so
    the wheel installed in the venv is the proxydiag imported."""
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                         capture_output=True, text=True, timeout=60).stdout.strip()
    borrowed = [path for path in sys.path if path.endswith(("site-packages", "dist-packages")) and Path(path).is_dir()]
    Path(own, "borrowed-from-the-test-interpreter.pth").write_text("".join(f"{path}\n" for path in borrowed))


@pytest.mark.parametrize("layout", ["target", "venv"])
def test_explain_and_rules_work_from_an_installed_wheel(wheel, tmp_path, layout):
    if layout == "target":  # pip install --target: no data-files directory, no sys.prefix share/
        site = tmp_path / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                       check=True, capture_output=True, timeout=300)
        python, env = sys.executable, dict(os.environ, PYTHONPATH=str(site))
    else:  # a fresh venv that borrows only the dependencies from this interpreter
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python, env = str(venv / "bin" / "python"), {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        borrow_site_packages(python)
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True,
                       timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> str:
        result = subprocess.run([python, "-m", "proxydiag", *args], cwd=elsewhere, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    where = subprocess.run([python, "-c", "import proxydiag; print(proxydiag.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=60).stdout
    assert str(REPO) not in where, f"the installed copy must be the one imported: {where}"
    page = run("explain", "PD301")
    assert page.startswith("# PD301 tls-flag-lost") and "## Fix on Stalwart" in page
    rules = run("rules").splitlines()
    assert len(rules) >= 40 and all(len(line.split(None, 3)) == 4 for line in rules), "every rule has its summary"
    report = run("analyze", str(REPO / "captures" / "v1-behind-tls.pcap"), "--format", "json", "--fail-on", "never")
    assert '"fix": "HAProxy:' in report
    page = run("analyze", str(REPO / "captures" / "v1-behind-tls.pcap"), "--format", "html", "--fail-on", "never")
    assert "PD302 tls-flag-impossible-v1" in page and "<svg" in page and "style-src 'sha256-" in page
