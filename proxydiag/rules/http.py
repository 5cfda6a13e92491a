"""PD5xx: HTTP (JMAP, the web admin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from proxydiag.facts.model import Connection
from proxydiag.parsers.protocols import HttpOpening
from proxydiag.rules.base import Context, Endpoint, Hit, Rule, address_or_text, endpoint, server_endpoint
from proxydiag.rules.said import Names, Said


def http_opening(conn: Connection) -> HttpOpening | None:
    return conn.opening if isinstance(conn.opening, HttpOpening) else None


def forwarded_for(conn: Connection) -> list[str]:
    """Client addresses named by Forwarded / X-Forwarded-For / X-Real-IP, in Stalwart's
    order of preference (Forwarded first, then the first X-Forwarded-For entry)."""
    http = http_opening(conn)
    if http is None:
        return []
    names = []
    for value in http.forwarded or []:
        for part in value.split(";"):
            key, _, address = part.strip().partition("=")
            if key.strip().lower() == "for":
                names.append(_forwarded_node(address))
    names.extend(http.x_forwarded_for or [])
    names.extend(http.x_real_ip or [])
    return names


def _forwarded_node(value: str) -> str:
    """RFC 7239 node: `192.0.2.1`, `"[2001:db8::1]:4711"`, `192.0.2.1:80`."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class NoClientAddressOverHttp(Said):
    server: Endpoint

    def message(self, names: Names) -> str:
        return (f"HTTP requests reach {self.server.told(names)} with neither a PROXY header nor Forwarded / "
                "X-Forwarded-For / X-Real-IP: every request seems to come from the proxy.")


class HttpClientAddressLost(Rule):
    code = "PD501"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        http = http_opening(conn)
        if conn.header is not None or http is None or http.method is None:
            return
        if not forwarded_for(conn):
            yield Hit(
                NoClientAddressOverHttp(server_endpoint(conn)),
                [conn], {"request": conn.opening.client_first_line}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class ForwardedConflict(Said):
    header_client: str
    forwarded_client: str  # what the HTTP header says, an address or not

    def message(self, names: Names) -> str:
        return (f"The PROXY header names {names.address(self.header_client)} but the HTTP forwarding headers name "
                f"{address_or_text(names, self.forwarded_client)}: Stalwart with use-x-forwarded believes the HTTP header.")


class HttpForwardedConflict(Rule):
    code = "PD502"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        named = forwarded_for(conn)
        if header is None or not header.carries_address or header.src_addr is None or not named or named[0] == header.src_addr:
            return
        yield Hit(
            ForwardedConflict(header.src_addr, named[0]),
            [conn], {"proxy_header_src": header.src_addr, "forwarded_for": named}, group=endpoint(conn),
        )


RULES = [HttpClientAddressLost(), HttpForwardedConflict()]
