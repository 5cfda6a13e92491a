"""PD5xx: HTTP (JMAP, the web admin)."""

from __future__ import annotations

from proxydiag.rules.base import Hit, Rule, describe_endpoint, endpoint
from proxydiag.rules.header import opening_value


def forwarded_for(conn) -> list[str]:
    """Client addresses named by Forwarded / X-Forwarded-For / X-Real-IP, first first."""
    http = opening_value(conn, "http")
    if http is None:
        return []
    names = []
    for value in getattr(http, "forwarded", []) or []:
        for part in value.split(";"):
            key, _, address = part.strip().partition("=")
            if key.lower() == "for":
                names.append(address.strip('"[]').rsplit(":", 1)[0] if address.count(":") == 1 else address.strip('"[]'))
    for value in getattr(http, "x_forwarded_for", []) or []:
        names.extend(item.strip() for item in value.split(",") if item.strip())
    names.extend(getattr(http, "x_real_ip", []) or [])
    return names


class HttpClientAddressLost(Rule):
    code, slug, severity = "PD501", "http-client-address-lost", "warning"

    def check(self, conn, ctx):
        if conn.protocol != "http" or conn.header is not None or opening_value(conn, "http") is None:
            return
        if opening_value(conn, "http").method is None:
            return
        if not forwarded_for(conn):
            yield Hit(
                f"HTTP requests reach {describe_endpoint(conn)} with neither a PROXY header nor Forwarded / "
                "X-Forwarded-For / X-Real-IP: every request seems to come from the proxy.",
                [conn], {"request": opening_value(conn, "client_first_line")}, group=endpoint(conn),
            )


class HttpForwardedConflict(Rule):
    code, slug, severity = "PD502", "http-forwarded-conflict", "warning"

    def check(self, conn, ctx):
        header = conn.header
        named = forwarded_for(conn)
        if header is None or not header.carries_address or not named or named[0] == header.src_addr:
            return
        yield Hit(
            f"The PROXY header names {header.src_addr} but the HTTP forwarding headers name {named[0]}: Stalwart with "
            "use-x-forwarded believes the HTTP header.",
            [conn], {"proxy_header_src": header.src_addr, "forwarded_for": named}, group=endpoint(conn),
        )


RULES = [HttpClientAddressLost(), HttpForwardedConflict()]
