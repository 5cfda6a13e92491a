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


def test_an_inferred_expectation_names_an_ipv6_endpoint_in_brackets():
    """"connections to fd12::25:10025" could be read as an address ending in :10025."""
    from proxydiag.facts.provenance import Majority
    from proxydiag.names import AS_THEY_ARE

    said = Majority(3, 4, "fd12::25", 10025, True).message(AS_THEY_ARE)
    assert "connections to [fd12::25]:10025 carry" in said
    assert "to 192.0.2.1:25 carry no" in Majority(3, 4, "192.0.2.1", 25, False).message(AS_THEY_ARE)


def test_no_listener_id_of_the_users_survives_anywhere_in_the_anonymized_document(tmp_path):
    """The id was kept in stalwart_config, every connection's expectation, PD102's and
    PD206's evidence: it is the user's naming (a company, a customer). Told everywhere as the
    finding's sentence tells it; an id made of words proxydiag knows ("submission") stays."""
    stalwart = tmp_path / "stalwart.toml"
    stalwart.write_text(f'[server.listener.{LISTENER}]\nbind = ["0.0.0.0:10587"]\nprotocol = "smtp"\n\n'
                        '[server.listener.submission]\nbind = ["0.0.0.0:10588"]\nprotocol = "smtp"\n\n'
                        '[server.proxy]\ntrusted-networks = ["10.9.9.9/32"]\n')
    capture = ROOT / "captures" / "haproxy-v2-smtp.pcap"
    result = subprocess.run([sys.executable, "-m", "proxydiag", "analyze", str(capture), "--stalwart-config", str(stalwart),
                             "-F", "json", "--anonymize"], capture_output=True, text=True, timeout=120)
    assert LISTENER not in result.stdout and "acme" not in result.stdout
    document = json.loads(result.stdout)
    ids = [listener["id"] for listener in document["stalwart_config"]["listeners"]]
    assert ids[1] == "submission" and ids[0] != LISTENER
    told = {finding["message"].split("Stalwart listener '")[1].split("'")[0]
            for finding in document["findings"] if "Stalwart listener '" in finding["message"]}
    assert told == {ids[0]}  # the same pseudonym in the sentence and in the document
