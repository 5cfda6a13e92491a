"""`--format html` in a real browser: Debian's headless Chromium renders every shipped
capture's page to PNG with its stylesheet allowed by the page's CSP and nothing else
asked for, and on the hostile captures (tests/hostile/) the DOM Chromium built holds no
element or attribute that came from the wire (tests/html_inert.py)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from proxydiag.cli import app
from tests.daemons import need
from tests.html_inert import html_problems
from tests.test_hostile_real import capture as real_hostile_capture  # noqa: F401 (a fixture: real daemons' hostile text)
from tests.test_pictures import HOSTILE, HOSTILE_CAPTURES, MANIFEST, SHIPPED

WIDTH = 1360
BROWSER_SECONDS = 90

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def chromium() -> str:
    return need("chromium")  # missing: the test fails, as every lab test does


def browse(chromium: str, page: Path, profile: Path, *what: str) -> subprocess.CompletedProcess:
    """One headless Chromium run over a local page, its console written to stderr."""
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *what, page.as_uri()],
        capture_output=True, text=True, timeout=BROWSER_SECONDS,
    )


def write_page(capture: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(app, ["analyze", str(capture), "--format", "html", "-o", str(out), "--fail-on", "never", *extra])
    assert result.exit_code == 0, result.output
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def console_refusals(stderr: str) -> list[str]:
    """What the page asked for and its policy refused, as Chromium's console says."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ("Content Security Policy" in line or "Refused" in line)]


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_every_shipped_capture_page_renders_to_png(chromium, entry, tmp_path):
    page = write_page(SHIPPED / entry["file"], tmp_path / "report.html")
    png = tmp_path / "report.png"
    result = browse(chromium, page, tmp_path / "profile", f"--screenshot={png}", f"--window-size={WIDTH},1600")
    assert png.exists(), result.stderr[-2000:]
    assert png_size(png) == (WIDTH, 1600)
    assert png.stat().st_size > 20_000, "a page with text and colour, not a blank one"
    assert not console_refusals(result.stderr), console_refusals(result.stderr)


def test_a_stylesheet_the_policy_does_not_name_is_refused(chromium, tmp_path):
    """The control for the test above: Chromium does enforce the page's CSP."""
    page = write_page(SHIPPED / "v1-behind-tls.pcap", tmp_path / "report.html")
    page.write_text(page.read_text().replace("<style>", "<style>body { color: red; }", 1))
    result = browse(chromium, page, tmp_path / "profile", "--dump-dom")
    assert console_refusals(result.stderr)


@pytest.mark.parametrize("anonymize", [False, True], ids=["plain", "anonymized"])
@pytest.mark.parametrize("capture", HOSTILE_CAPTURES)
def test_hostile_wire_text_builds_no_element_or_attribute(chromium, capture, anonymize, tmp_path):
    page = write_page(HOSTILE / "files" / capture, tmp_path / "report.html", *(["--anonymize"] if anonymize else []))
    check_dom(chromium, page, tmp_path)


def test_real_daemons_hostile_banners_build_no_element_or_attribute(chromium, real_hostile_capture, tmp_path):
    """Postfix's and Dovecot's banners with HTML and Markdown in them, HAProxy's UNIQUE_ID
    and AUTHORITY (tests/hostile_lab.py), in the page's text and its ladders."""
    page = write_page(real_hostile_capture, tmp_path / "report.html", "-v")
    written = page.read_text()
    assert "&lt;img src=x&gt;" in written and written.count("<svg") >= 1
    check_dom(chromium, page, tmp_path)


def check_dom(chromium: str, page: Path, tmp_path: Path) -> None:
    result = browse(chromium, page, tmp_path / "profile", "--dump-dom")
    dom = result.stdout
    assert "<main>" in dom and "</html>" in dom, result.stderr[-2000:]
    assert not html_problems(dom), html_problems(dom)
    assert dom.count("<svg") == page.read_text().count("<svg"), "every ladder is one SVG element, as written"
    assert not console_refusals(result.stderr), console_refusals(result.stderr)
