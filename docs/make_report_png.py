"""Regenerate docs/report-html.png, the README's picture of the HTML report (the page
`proxydiag analyze CAPTURE --format html` writes, as Debian's headless Chromium draws it;
the same capture as docs/report.svg, the terminal report):

    python3 docs/make_report_png.py [CAPTURE]
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from proxydiag import __version__
from proxydiag.pipeline.analysis import Settings, diagnose
from proxydiag.report import html
from proxydiag.report.views import summarised, told

DOCS = Path(__file__).resolve().parent
WINDOW = "1280,1500"  # the page's top: verdict, endpoints and the first finding with its ladder

capture = Path(sys.argv[1] if len(sys.argv) > 1 else DOCS.parent / "captures" / "v1-behind-tls.pcap").resolve()
shown = capture.relative_to(DOCS.parent) if capture.is_relative_to(DOCS.parent) else capture
document = told(summarised(diagnose([str(capture)], Settings()).to_dict(lazy=True)))
document["inputs"][0]["path"] = str(shown)
page = html.render(document, __version__, f"proxydiag analyze {shown} --format html")
chromium = shutil.which("chromium")
if chromium is None:
    sys.exit("make_report_png: needs Debian's chromium (apt-get install chromium)")
with tempfile.TemporaryDirectory() as scratch:
    source = Path(scratch) / "report.html"
    source.write_text(page)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                    f"--user-data-dir={scratch}/profile", f"--window-size={WINDOW}",
                    f"--screenshot={DOCS / 'report-html.png'}", source.as_uri()],
                   check=True, capture_output=True, timeout=90)
