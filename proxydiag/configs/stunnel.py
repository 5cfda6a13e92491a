"""stunnel's configuration -> ProxyConfig.

stunnel(8) (stunnel 5.68): a `[service]` section with `accept = [HOST:]PORT` and
`connect = [HOST:]PORT` (several `connect` lines are alternatives); in server mode
(`client = no`, the default) stunnel terminates TLS on `accept` and speaks plaintext to
`connect`; in client mode the reverse. `protocol = proxy` makes it send a v1 PROXY line
to the server (it has no v2); `local = HOST` is the source address towards the server.
Global options before the first section apply to every service.
"""

from __future__ import annotations

import re

from proxydiag.configs.citation import shown_line
from proxydiag.configs.model import ConfigReadError, FrontListener, Origin, ProxyConfig, Route, read_text, split_host_port


def looks_like(text: str) -> bool:
    return bool(re.search(r"(?m)^[ \t]*\[[^\]\n]+\][ \t\r]*$", text) and re.search(r"(?m)^[ \t]*(accept|connect)[ \t]*=", text))


def load(path: str) -> ProxyConfig:
    return parse(read_text(path), path)


def parse(text: str, path: str = "stunnel.conf") -> ProxyConfig:
    sections: list[tuple[Origin | None, dict[str, list[tuple[str, Origin]]]]] = [(None, {})]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        origin = Origin(path, number, raw)
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigReadError(path, number, "a section name must be written [name]")
            sections.append((origin, {}))
            continue
        key, equals, value = line.partition("=")
        if not equals:
            raise ConfigReadError(path, number, f"'{shown_line(line)}': expected option = value")  # masked: any line may land here
        sections[-1][1].setdefault(key.strip().lower(), []).append((value.strip(), origin))
    globals_ = sections[0][1]
    listeners, routes = [], []
    for _, options in sections[1:]:
        merged = {**globals_, **options}
        client = _value(merged, "client") in ("yes", "true", "1")
        proxy = [item for item in merged.get("protocol", []) if item[0].lower() == "proxy"]
        local = merged.get("local", [])
        for accept_text, accept_origin in merged.get("accept", []):
            address, port = _address(accept_text, accept_origin)
            if port is None:
                raise ConfigReadError(path, accept_origin.line, f"accept = {accept_text}: no port")
            front = FrontListener(address, port, tls_terminated=not client, accepts_header=False, origin=accept_origin)
            listeners.append(front)
            for connect_text, connect_origin in merged.get("connect", []):
                host, server_port = _address(connect_text, connect_origin)
                routes.append(Route(
                    front=front, server_address=host or "127.0.0.1", server_port=server_port,
                    sends="v1" if proxy else "none", origin=connect_origin, tls_to_server=client,
                    source_address=local[-1][0] if local else None, sends_origin=proxy[-1][1] if proxy else None,
                    source_origin=local[-1][1] if local else None, block_origin=connect_origin,
                ))
    if not routes and not listeners:
        raise ConfigReadError(path, None, "no service with accept and connect: not a stunnel configuration")
    return ProxyConfig("stunnel", path, tuple(listeners), tuple(routes))


def _value(options: dict[str, list[tuple[str, Origin]]], key: str) -> str:
    values = options.get(key)
    return values[-1][0].lower() if values else ""


def _address(text: str, origin: Origin) -> tuple[str, int | None]:
    parsed = split_host_port(text)
    if parsed is None:
        raise ConfigReadError(origin.path, origin.line, f"{text!r}: invalid port")
    return parsed
