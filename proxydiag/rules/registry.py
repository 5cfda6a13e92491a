"""Every rule of the catalog, in the order the blocks come: `rules.judge` runs them.

Adding a finding touches one rule (in the module of its block) and one page
(proxydiag/findings/PDxxx.md)."""


from __future__ import annotations

from proxydiag.facts.model import Connection
from proxydiag.parsers.proxy_protocol import PP2_TYPE_AWS, PP2_TYPE_AZURE, PP2_TYPE_GCP, PP2_TYPE_UNIQUE_ID
from proxydiag.rules import address, capture, config, header, http, server, tls
from proxydiag.rules.base import Rule

ALL_RULES: list[Rule] = [
    *header.RULES,
    *address.RULES,
    *tls.RULES,
    *server.RULES,
    *http.RULES,
    *config.RULES,
    *capture.RULES,
]
RULES_BY_CODE = {rule.code: rule for rule in ALL_RULES}

def recognise_proxy(conn: Connection) -> str | None:
    """Which proxy sent this header, where its bytes say so (never a guess)."""
    header = conn.header
    if header is None:
        return None
    types = {tlv.type for tlv in header.tlvs}
    if types & {PP2_TYPE_AWS, PP2_TYPE_AZURE, PP2_TYPE_GCP}:
        return "Cloud load balancers"
    if header.ssl is not None or PP2_TYPE_UNIQUE_ID in types or (header.command == "LOCAL" and header.version == 2):
        return "HAProxy"
    return None
