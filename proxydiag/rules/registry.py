"""Every rule of the catalog, in the order the blocks come: `rules.judge` runs them.

Adding a finding touches one rule (in the module of its block) and one page
(proxydiag/findings/PDxxx.md)."""


from __future__ import annotations

import re
from collections.abc import Sequence

from proxydiag.facts.model import Connection
from proxydiag.parsers.protocols.software import STALWART_PROXY
from proxydiag.parsers.proxy_protocol import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_AWS,
    PP2_TYPE_AZURE,
    PP2_TYPE_CRC32C,
    PP2_TYPE_GCP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    ProxyHeader,
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


def recognise_proxy(conn: Connection, conversation: Sequence[Connection] = ()) -> str | None:
    """Which proxy sent this header, where its bytes say so (never a guess): the header's
    TLVs, the proxy's own fixed commands on this leg; else, among the legs of its
    conversation, the one the proxy itself answered (the leg before this one, or this one)."""
    return _by_own_bytes(conn) or next(
        filter(None, (_answering_proxy(front, onward) for front, onward in _proxy_sides(conn, conversation))), None)


def _by_own_bytes(conn: Connection) -> str | None:
    header = conn.header
    if header is not None:
        types = {tlv.type for tlv in header.tlvs}
        if types & {PP2_TYPE_AWS, PP2_TYPE_AZURE, PP2_TYPE_GCP}:
            return "Cloud load balancers"
        if _nginx_v2(header.tlvs):
            return NGINX_V2
        if header.ssl is not None or PP2_TYPE_UNIQUE_ID in types or (header.command == "LOCAL" and header.version == 2):
            return _haproxy_release(header, types)
    return _stalwart_proxy_command(conn.client_first)


# What HAProxy writes only from a release on (src/connection.c make_proxy_line_v2 at each tag):
# `proxy-v2-options` (1.9: crc32c, authority, ssl-cipher, cert-sig, cert-key) and its
# `unique-id` (2.2); `send-proxy-v2-ssl` alone (the SSL TLV with its version) since 1.5.
def _haproxy_release(header: ProxyHeader, types: set[int]) -> str:
    if PP2_TYPE_UNIQUE_ID in types:
        return "HAProxy 2.2+"
    ssl = header.ssl
    if types & {PP2_TYPE_CRC32C, PP2_TYPE_AUTHORITY} or (ssl is not None and (ssl.cipher or ssl.sig_alg or ssl.key_alg)):
        return "HAProxy 1.9+"
    return "HAProxy"


# Stalwart's own proxy (stalwartlabs/proxy v1.0.0) writes its v2 header with no TLV, like
# HAProxy's `send-proxy-v2`, Traefik, Caddy and Envoy (src/net/proxy_protocol.rs:151-163,
# proxy-header 0.1.2 src/v2.rs:112-167): the header alone never names it. What it says
# next to the backend does, where it is its own: `P1 STARTTLS` first to an IMAP backend
# with `tls = "starttls"` (src/proto/imap.rs:455), `F1 ID (...)` to pass the client by IMAP
# ID (src/proto/forward.rs:163).
STALWART_PROXY_COMMANDS = ("P1 STARTTLS", "F1 ID ")


def _stalwart_proxy_command(first: str | None) -> str | None:
    if first is not None and first.upper().startswith(STALWART_PROXY_COMMANDS):
        return STALWART_PROXY
    return None


def _proxy_sides(conn: Connection, conversation: Sequence[Connection]) -> list[tuple[Connection, Connection]]:
    """The legs whose server side is the proxy in question, each with the leg that proxy
    opened onwards: the hop before `conn` (its server opened `conn`); `conn` itself where it
    carries no header and was relayed onwards (a front leg: its server is a proxy)."""
    ids = [leg.id for leg in conversation]
    if conn.id not in ids:
        return []
    at = ids.index(conn.id)
    relayed = conn.header is None and at + 1 < len(ids)
    return ([(conversation[at - 1], conn)] if at > 0 else []) + ([(conn, conversation[at + 1])] if relayed else [])


# A proxy that answers the client itself names itself: Stalwart's proxy greets submission
# clients in its own words (parsers/protocols/software.py), and every client in Stalwart's
# words before it has opened the backend (it authenticates the client first, then routes:
# src/proto/imap.rs:120-127, pop3.rs, managesieve.rs, smtp.rs:109-113), where a relay only
# passes on the greeting the backend sent after it connected; nginx, Caddy and Envoy write
# their `Server` header on the HTTP responses they send (nginx's with its version unless
# `server_tokens off`: src/http/ngx_http_header_filter_module.c; Caddy's `Caddy`,
# modules/caddyhttp/server.go; Envoy's `envoy`, the connection manager's default
# `server_name`). HAProxy and Traefik add none.
SERVER_TOKENS = {"nginx": "nginx", "caddy": "Caddy", "envoy": "Envoy"}
SERVER_TOKEN = re.compile(r"([A-Za-z]+)(?:/(\d+(?:\.\d+){0,3}))?")


def _answering_proxy(front: Connection, onward: Connection) -> str | None:
    software = front.opening.software
    name = software.get("name") if software is not None else None
    if name == STALWART_PROXY or (name == "Stalwart" and _greeted_before(front, onward)):
        return STALWART_PROXY
    return proxy_of_server_header(getattr(front.opening, "server_header", None))


def _greeted_before(front: Connection, onward: Connection) -> bool:
    """The front leg's greeting came before the leg onwards even started: the proxy's own."""
    return front.greeting_ts is not None and front.greeting_ts < onward.start_ts


def proxy_of_server_header(value: str | None) -> str | None:
    """`nginx/1.31.4` -> `nginx 1.31.4+` (the page's fix for that version first), `nginx`,
    `Caddy`, `envoy` -> the proxy's name; anything else -> None."""
    token = SERVER_TOKEN.fullmatch((value or "").split(" ", 1)[0])
    name = SERVER_TOKENS.get(token.group(1).lower()) if token else None
    if token is None or name is None:
        return None
    return f"{name} {token.group(2)}+" if token.group(2) else name


# nginx 1.31.4 (src/core/ngx_proxy_protocol.c) writes ALPN, AUTHORITY and SSL, then the CRC32C
# TLV last; HAProxy (src/connection.c make_proxy_line_v2) reserves its CRC32C before ALPN,
# AUTHORITY and SSL; and only nginx 1.31.4 and later send v2 at all: such a header names the
# proxy and its version.
NGINX_V2 = "nginx 1.31.4+"
NGINX_V2_TLVS = frozenset({PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL})


def _nginx_v2(tlvs: tuple[Tlv, ...]) -> bool:
    return len(tlvs) >= 2 and tlvs[-1].type == PP2_TYPE_CRC32C and all(tlv.type in NGINX_V2_TLVS for tlv in tlvs[:-1])
