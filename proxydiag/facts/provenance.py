"""Where a listener's expectation came from, typed: which option, which Stalwart listener
of which file and the leg's source, or how many connections it was inferred from. Its
sentence is written only when a finding or a document tells it, through `Names`, so
`--anonymize` pseudonymises the listener, the path and the addresses as it does a hit's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from proxydiag.names import Names


@dataclass(frozen=True)
class Provenance(ABC):
    @abstractmethod
    def message(self, names: Names) -> str:
        """Where the expectation came from, every name through `names`."""


@dataclass(frozen=True)
class ExpectOption(Provenance):
    """`--expect VALUE`, or `--expect PORT=VALUE` when `port` is set."""

    value: str
    port: int | None = None

    def message(self, names: Names) -> str:
        return f"--expect {self.value}" if self.port is None else f"--expect {self.port}={self.value}"


@dataclass(frozen=True)
class StalwartListener(Provenance):
    """The listener of the Stalwart configuration the port belongs to, and whether it
    trusts the leg's source."""

    listener: str
    path: str
    source: str
    trusted: bool

    def message(self, names: Names) -> str:
        why = "trusted" if self.trusted else "not trusted"
        return (f"Stalwart listener {names.text(self.listener)!r} ({names.path(self.path)}): "
                f"source {names.address(self.source)} is {why}")


@dataclass(frozen=True)
class TrustedNetworksOption(Provenance):
    """`--trusted-networks`, with the leg's source in it or not."""

    trusted: bool

    def message(self, names: Names) -> str:
        return f"--trusted-networks: source {'in' if self.trusted else 'not in'} the list"


@dataclass(frozen=True)
class Majority(Provenance):
    """Inferred: most connections to the server endpoint carry a header (or none)."""

    majority: int
    connections: int
    address: str
    port: int
    carry: bool

    def message(self, names: Names) -> str:
        return (f"inferred: {self.majority} of {self.connections} connections to {names.address(self.address)}:{self.port} "
                f"{'carry' if self.carry else 'carry no'} PROXY header")
