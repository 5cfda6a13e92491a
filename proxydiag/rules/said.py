"""What a rule says, typed: a hit kind holds the endpoints, addresses, names, headers and
quoted text it is about, and writes its sentence only when a view asks, through `Names`.

So the sentence never exists with the original addresses in it under `--anonymize`: the
report hands `message()` a `Names` that pseudonymises each typed value, instead of hunting
addresses in finished prose. (ruff's violations work the same way: fields, then `message()`.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Said(ABC):
    """A hit kind: its fields are the typed facts the finding is about; `message` is the
    only place its sentence is written."""

    @abstractmethod
    def message(self, names: Names) -> str:
        """The sentence, every address, name, path and quoted text through `names`."""


@dataclass(frozen=True)
class Sentence(Said):
    """A sentence that names nothing (no address, host, path or quoted text): it needs no
    `Names`. Not for anything a user's evidence put in it."""

    text: str

    def message(self, names: Names) -> str:
        return self.text
