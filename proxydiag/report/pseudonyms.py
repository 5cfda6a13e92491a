"""Pseudonyms for `--anonymize`: the same original gets the same pseudonym everywhere in
one report. An address keeps its family and its kind (loopback, private, shared CGNAT
space, link-local, public), so a report still shows "a private client behind a public
proxy"; `::1` and the unspecified addresses identify nobody and stay as they are.

`Pseudonyms` is the `Names` (rules/said.py) a typed finding tells its sentence through,
and what wire text keeps of itself (report/allowlist.py) is pseudonymised by it too."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from proxydiag.report.allowlist import allowed_text, ip_of

__all__ = ["Pseudonyms", "ip_of"]

_SUFFIX = re.compile(r"\.[a-z]{1,7}")

V4_KINDS = [
    (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("127.200.0.0/16")),
    (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.200.0.0/16")),
    (ipaddress.ip_network("172.16.0.0/12"), ipaddress.ip_network("10.201.0.0/16")),
    (ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("10.202.0.0/16")),
    (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("100.100.0.0/16")),
    (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("169.254.200.0/24")),
]
V4_PUBLIC = ipaddress.ip_network("198.18.0.0/15")
V6_KINDS = [
    (ipaddress.ip_network("fc00::/7"), ipaddress.ip_network("fd00:200::/64")),
    (ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("fe80::200:0:0/96")),
]
V6_PUBLIC = ipaddress.ip_network("2001:db8:200::/64")


@dataclass
class Pseudonyms:
    """Every pseudonym given in one report (or one stream of events), and the originals
    none of them may equal."""

    originals: set[str] = field(default_factory=set)
    mapping: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    opaque: dict[bytes, bytes] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    given: set[str] = field(default_factory=set)  # the pseudonyms of names and words (text keeps them)

    def address(self, text: str) -> str:
        ip = ip_of(text)
        if ip is None or ip.is_unspecified or (ip.version == 6 and ip.is_loopback):
            return text
        key = str(ip)
        if key not in self.mapping:
            self.mapping[key] = self._new_address(ip)
        return self.mapping[key]

    def _new_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        if ip.version == 6 and ip.ipv4_mapped:
            return "::ffff:" + self.address(str(ip.ipv4_mapped))
        kinds, public = (V4_KINDS, V4_PUBLIC) if ip.version == 4 else (V6_KINDS, V6_PUBLIC)
        pool = next((target for source, target in kinds if ip in source), public)
        while True:
            candidate = str(pool.network_address + self._count(str(pool)))
            if candidate not in self.originals:
                return candidate

    def hostname(self, name: str) -> str:
        return self._named(name.lower(), "host", ".anon.invalid")

    def host(self, name: str) -> str:
        """`Names.host`: a host name (a single label too)."""
        return self.hostname(name)

    def known_host(self, name: str) -> bool:
        """Whether `name` is a host name already given a pseudonym."""
        return name.lower() in self.mapping and ip_of(name) is None

    def word(self, word: str) -> str:
        """Any other word of wire text that proxydiag does not know."""
        return self._named(f"word:{word}", "word")

    def text(self, text: str) -> str:
        """`Names.text`: only the tokens proxydiag knows survive (report/allowlist.py)."""
        return allowed_text(text, self)

    def name(self, name: str) -> str:
        """A name a certificate gives (an organisation, a unit, a place, a mailbox)."""
        return self._named(f"name:{name}", "name")

    def path(self, path: str) -> str:
        if path in ("-", "stdin"):
            return path
        if path not in self.paths:
            suffix = PurePath(path).suffix
            self.paths[path] = f"input{self._count('path')}" + (suffix if _SUFFIX.fullmatch(suffix) else "")
        return self.paths[path]

    def known_path(self, path: str) -> str | None:
        """The pseudonym of a file the command was given, or None."""
        return self.paths.get(path)

    def blob(self, value: bytes) -> bytes:
        """An opaque identifier: as long as the original, printable if it was."""
        if value not in self.opaque:
            stream = hashlib.sha256(b"proxydiag-anon-%d" % self._count("blob")).hexdigest() * (len(value) // 64 + 1)
            printable = value.isascii() and value.decode("ascii").isprintable()
            keep = re.match(rb"[A-Za-z]{1,8}-", value) if printable else None  # AWS: vpce-...
            kept = keep.group() if keep else b""
            filler = stream.encode() if printable else bytes.fromhex(stream * 2)
            self.opaque[value] = kept + filler[: len(value) - len(kept)]
        return self.opaque[value]

    def is_pseudonym(self, token: str) -> bool:
        """Whether `token` is a name's or a word's pseudonym already (text rewritten twice
        keeps it)."""
        return token in self.given

    def _named(self, key: str, pool: str, suffix: str = "") -> str:
        """The pseudonym `pool` + a number (+ `suffix`) of the original `key` stands for."""
        if key not in self.mapping:
            self.mapping[key] = pseudonym = f"{pool}{self._count(pool)}{suffix}"
            self.given.add(pseudonym)
        return self.mapping[key]

    def _count(self, pool: str) -> int:
        self.counters[pool] = self.counters.get(pool, 0) + 1
        return self.counters[pool]
