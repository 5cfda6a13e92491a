"""An expectation's provenance under `--anonymize`: the Stalwart listener, the
configuration's path and the leg's source it names come out pseudonymised, the words
around them as proxydiag wrote them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENER = "acme-submission"
SITE = "acme-mailhub-prod"


def test_analyze_anonymize_tells_the_listener_path_and_source_of_an_expectation_through_pseudonyms(tmp_path):
    site = tmp_path / SITE
    site.mkdir()
    stalwart = site / "stalwart.toml"
    stalwart.write_text(f'[server.listener.{LISTENER}]\nbind = ["0.0.0.0:10587"]\nprotocol = "smtp"\n')
    capture = ROOT / "captures" / "haproxy-v2-smtp.pcap"  # HAProxy 127.80.0.20 -> 127.80.0.30:10587 with v2 headers
    result = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", str(capture), "--stalwart-config", str(stalwart),
                             "-F", "json", "--anonymize"], capture_output=True, text=True, timeout=120)
    document = json.loads(result.stdout)
    (message,) = [finding["message"] for finding in document["findings"] if "Stalwart listener" in finding["message"]]
    assert message.startswith("127.200.0.3:10587 received a PROXY v2 header but does not expect one (Stalwart listener '")
    assert message.endswith("is not trusted).")
    for original in (LISTENER, SITE, "stalwart.toml", "127.80.0.20", "127.80.0.30"):
        assert original not in message, original
