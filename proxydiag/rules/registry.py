"""Every rule of the catalog, in the order the blocks come: `rules.judge` runs them.

Adding a finding touches one rule (in the module of its block) and one page
(proxydiag/findings/PDxxx.md)."""


from __future__ import annotations

from proxydiag.facts.model import Connection
from proxydiag.parsers.proxy_protocol import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_AWS,
    PP2_TYPE_AZURE,
    PP2_TYPE_CRC32C,
    PP2_TYPE_GCP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    Tlv,
)
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
    if _nginx_v2(header.tlvs):
        return NGINX_V2
    if header.ssl is not None or PP2_TYPE_UNIQUE_ID in types or (header.command == "LOCAL" and header.version == 2):
        return "HAProxy"
    return None


# nginx 1.31.4 (src/core/ngx_proxy_protocol.c) writes ALPN, AUTHORITY and SSL, then the CRC32C
# TLV last; HAProxy (src/connection.c make_proxy_line_v2) reserves its CRC32C before ALPN,
# AUTHORITY and SSL; and only nginx 1.31.4 and later send v2 at all: such a header names the
# proxy and its version.
NGINX_V2 = "nginx 1.31.4+"
NGINX_V2_TLVS = frozenset({PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL})


def _nginx_v2(tlvs: tuple[Tlv, ...]) -> bool:
    return len(tlvs) >= 2 and tlvs[-1].type == PP2_TYPE_CRC32C and all(tlv.type in NGINX_V2_TLVS for tlv in tlvs[:-1])
