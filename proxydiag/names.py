"""How a sentence names what it speaks of: `Names` tells addresses, hosts, paths and quoted
text, as they are (`AS_THEY_ARE`) or pseudonymised (`--anonymize`, report/pseudonyms.py).

At the bottom of the layers so that whatever carries typed facts below the rules (an
expectation's provenance, a parser's violation) can write its sentence through it too.
"""

from __future__ import annotations

from typing import Protocol


class Names(Protocol):
    """How a sentence names what it speaks of: as it is, or pseudonymised (`--anonymize`)."""

    def address(self, address: str) -> str:
        """An IP address, without a port."""
        ...

    def host(self, name: str) -> str:
        """A host name (DNS or single label)."""
        ...

    def path(self, path: str) -> str:
        """A file the user gave."""
        ...

    def text(self, text: str) -> str:
        """Wire, configuration, log or certificate text quoted as it came: under
        `--anonymize`, only the tokens proxydiag knows survive (an allowlist)."""
        ...


class AsTheyAre:
    """`Names` that change nothing: the report as the evidence showed it."""

    def address(self, address: str) -> str:
        return address

    def host(self, name: str) -> str:
        return name

    def path(self, path: str) -> str:
        return path

    def text(self, text: str) -> str:
        return text


AS_THEY_ARE = AsTheyAre()


def endpoint(names: Names, address: str, port: int | None) -> str:
    """`address:port`, IPv6 in brackets; the address through `names`."""
    shown = names.address(address)
    if port is None:
        return shown
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"
