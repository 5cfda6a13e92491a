"""Stalwart configurations for the tests (0.15 TOML), laid out as Stalwart's proxy guides lay
them out: each listener on 10000 + its public port behind the proxy, implicit TLS where the
public port has it, the proxy trusted server-wide or per listener."""

from __future__ import annotations

import json
from collections.abc import Iterable

# listener id: (port behind the proxy, protocol, implicit TLS)
GUIDE_LISTENERS: dict[str, tuple[int, str, bool]] = {
    "smtp": (10025, "smtp", False),
    "submission": (10587, "smtp", False),
    "submissions": (10465, "smtp", True),
    "imap": (10143, "imap", False),
    "imaps": (10993, "imap", True),
    "pop3": (10110, "pop3", False),
    "pop3s": (10995, "pop3", True),
    "sieve": (14190, "managesieve", False),
    "https": (10443, "http", True),
}


def listener_toml(name: str, bind: str, protocol: str, *, implicit_tls: bool = False,
                  trusted: Iterable[str] | None = None) -> str:
    """One `[server.listener.NAME]` table; `trusted` is the listener's own proxy list."""
    lines = [f"[server.listener.{name}]", f"bind = [{json.dumps(bind)}]", f"protocol = {json.dumps(protocol)}"]
    if implicit_tls:
        lines.append("tls.implicit = true")
    if trusted is not None:
        lines.append(f"proxy.trusted-networks = {json.dumps(list(trusted))}")
    return "\n".join(lines) + "\n"


def stalwart_toml(*listeners: str, trusted: Iterable[str] | None = None, host: str = "[::]",
                  listener_trusted: Iterable[str] | None = None, ports: dict[str, int] | None = None) -> str:
    """A configuration with the guide's `listeners` (ids of GUIDE_LISTENERS) bound on `host`,
    `trusted` as the server-wide proxy list (none: no `[server.proxy]` table) and
    `listener_trusted` as every listener's own list; `ports` moves a listener elsewhere."""
    parts = []
    if trusted is not None:
        parts.append(f"[server.proxy]\ntrusted-networks = {json.dumps(list(trusted))}\n")
    for name in listeners:
        port, protocol, implicit_tls = GUIDE_LISTENERS[name]
        port = (ports or {}).get(name, port)
        parts.append(listener_toml(name, f"{host}:{port}", protocol, implicit_tls=implicit_tls,
                                   trusted=listener_trusted))
    return "\n" + "\n".join(parts)
