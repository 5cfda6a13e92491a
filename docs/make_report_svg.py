"""Regenerate docs/report.svg, the picture of a real report in the README and the guide:

    python3 docs/make_report_svg.py [CAPTURE]
"""

import sys
from pathlib import Path

from rich.console import Console

from proxydiag.pipeline.analysis import Settings, diagnose
from proxydiag.report import rich as rich_report
from proxydiag.report.views import told

DOCS = Path(__file__).resolve().parent
capture = sys.argv[1] if len(sys.argv) > 1 else str(DOCS.parent / "captures" / "v1-behind-tls.pcap")
document = told(diagnose([capture], Settings()).to_dict())  # each finding told its fix, as the command does
console = Console(record=True, width=100, force_terminal=True, color_system="truecolor", file=open("/dev/null", "w"))
rich_report.render(document, console)
console.save_svg(str(DOCS / "report.svg"), title=f"proxydiag analyze {Path(capture).name}")
