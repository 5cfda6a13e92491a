"""Every ladder of every shipped and hostile capture (plain and anonymised) drawn by the
real Mermaid in headless Chromium, with GitHub's securityLevel 'strict'. Not part of the
suite (Debian ships no Mermaid): run it by hand with Mermaid's bundle from npm,

    npm pack mermaid@11 && tar xzf mermaid-*.tgz
    PYTHONPATH=. python3 tests/mermaid_render.py package/dist/mermaid.min.js

It fails unless every diagram parses and renders, and no rendered SVG holds a link, an
image, a script or foreign HTML."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from proxydiag.report import mermaid
from proxydiag.report.anonymize import anonymize
from proxydiag.report.ladder import ladders_of
from proxydiag.report.views import visible_document
from tests.test_pictures import HOSTILE, HOSTILE_CAPTURES, MANIFEST, SHIPPED, human_document

FORBIDDEN = frozenset({"a", "img", "image", "script", "foreignobject", "iframe", "object", "embed", "use"})
HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"><script src="mermaid.min.js"></script></head><body>
<div id="out"></div><pre id="log"></pre><script type="application/json" id="data">DATA</script><script>
mermaid.initialize({startOnLoad: false, securityLevel: 'strict'});
const diagrams = JSON.parse(document.getElementById('data').textContent);
(async () => {
  const log = document.getElementById('log'), out = document.getElementById('out');
  let drawn = 0;
  for (let i = 0; i < diagrams.length; i++) {
    try {
      const holder = document.createElement('div');
      holder.innerHTML = (await mermaid.render('d' + i, diagrams[i].text)).svg;
      out.appendChild(holder); drawn++;
    } catch (error) { log.textContent += 'FAILED ' + diagrams[i].name + ': ' + error.message + '\\n'; }
  }
  log.textContent += 'DRAWN ' + drawn + ' OF ' + diagrams.length + '\\n';
})();
</script></body></html>"""


def diagrams() -> list[dict]:
    found = []
    for path in [SHIPPED / entry["file"] for entry in MANIFEST] + [HOSTILE / "files" / name for name in HOSTILE_CAPTURES]:
        for anonymized in (False, True):
            document = human_document(path)
            document = visible_document(anonymize(document) if anonymized else document)
            found += [{"name": path.name + (" --anonymize" if anonymized else ""),
                       "text": "\n".join(mermaid.sequence_diagram(ladder))} for ladder in ladders_of(document).values()]
    return found


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.found.add(tag)
        self.found |= {f"@{name}" for name, _ in attrs if name in ("href", "xlink:href", "src") or name.startswith("on")}


def main(bundle: str) -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("mermaid_render: needs Debian's chromium")
    drawn = diagrams()
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copy(bundle, Path(scratch) / "mermaid.min.js")
        page = Path(scratch) / "harness.html"
        page.write_text(HARNESS.replace("DATA", json.dumps(drawn).replace("</", "<\\/")))
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={scratch}/profile",
                              "--allow-file-access-from-files", "--virtual-time-budget=300000", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=600).stdout
    rendered, log = dom.split('<pre id="log">', 1)
    tags = _Tags()
    tags.feed(rendered.split('<div id="out">', 1)[1])
    bad = sorted(tags.found & FORBIDDEN) + sorted(tag for tag in tags.found if tag.startswith("@"))
    print(log.split("</pre>", 1)[0].strip())
    print(f"elements and attributes that must not be there: {bad or 'none'}")
    return 0 if f"DRAWN {len(drawn)} OF {len(drawn)}" in log and not bad else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
