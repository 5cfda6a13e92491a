"""What parsing a PROXY header yields: the header, its TLVs, and the rules the bytes broke."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from proxydiag.jsontypes import JsonDict
from proxydiag.names import AS_THEY_ARE, Names
from proxydiag.parsers.proxy_protocol.problems import Incomplete, Problem
from proxydiag.parsers.proxy_protocol.spec import (
    NOT_A_HEADER,
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_CERT_SESS,
    PP2_CLIENT_SSL,
    PP2_TYPE_NOOP,
    tlv_name,
)


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule of the spec the bytes broke: where, the rule's name, and what broke it (typed: its
    sentence is written by `message(names)` when a view asks)."""

    offset: int
    rule: str
    problem: Problem

    def message(self, names: Names) -> str:
        return self.problem.message(names)

    def to_dict(self) -> JsonDict:
        return {"offset": self.offset, "rule": self.rule, "message": self.message(AS_THEY_ARE)}


# TLV types no one defines: a header whose length ran into the client's bytes reads them
# as one, so its value (which may hold "a1 LOGIN user password") is counted, not shown.
UNSHOWN_TLVS = frozenset({"UNASSIGNED", "FUTURE"})
# What a text value that reads as a client's credential command is shown as.
HIDDEN_TEXT = "(not shown: reads as a client's credential command)"


@dataclass(frozen=True, slots=True)
class Tlv:
    type: int
    offset: int
    value: bytes
    decoded: object = None
    hidden: bool = False  # its value is never shown: see tlvs.v2_tlvs

    @property
    def name(self) -> str:
        return tlv_name(self.type)

    def to_dict(self) -> JsonDict:
        entry = {"type": self.type, "name": self.name, "length": len(self.value), "offset": self.offset}
        if self.type == PP2_TYPE_NOOP or self.name in UNSHOWN_TLVS:
            return entry
        if self.hidden:
            entry["value_hidden"] = "the value holds what reads as a client's credential command"
        elif self.decoded is not None:
            entry["value"] = self.decoded
        else:
            entry["value"] = self.value.hex()
        return entry


@dataclass(frozen=True, slots=True)
class SslInfo:
    client: int
    verify: int
    version: str | None = None
    cn: str | None = None
    cipher: str | None = None
    sig_alg: str | None = None
    key_alg: str | None = None
    group: str | None = None
    sig_scheme: str | None = None
    client_cert_length: int | None = None

    @property
    def client_ssl(self) -> bool:
        return bool(self.client & PP2_CLIENT_SSL)

    def to_dict(self) -> JsonDict:
        return {
            "client": self.client,
            "client_ssl": self.client_ssl,
            "client_cert_conn": bool(self.client & PP2_CLIENT_CERT_CONN),
            "client_cert_sess": bool(self.client & PP2_CLIENT_CERT_SESS),
            "verify": self.verify,
            "version": self.version,
            "cn": self.cn,
            "cipher": self.cipher,
            "sig_alg": self.sig_alg,
            "key_alg": self.key_alg,
            "group": self.group,
            "sig_scheme": self.sig_scheme,
            "client_cert_length": self.client_cert_length,
        }


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    command: str
    family: str
    length: int
    src_addr: str | None = None
    dst_addr: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    tlvs: tuple[Tlv, ...] = ()
    ssl: SslInfo | None = None
    tlvs_omitted: int = 0  # TLVs past MAX_TLVS, counted but not kept

    @property
    def carries_address(self) -> bool:
        return self.command == "PROXY" and self.src_addr is not None and not self.family.startswith("UNIX")

    def to_dict(self) -> JsonDict:
        return {
            "version": self.version,
            "command": self.command,
            "family": self.family,
            "src_addr": self.src_addr,
            "src_port": self.src_port,
            "dst_addr": self.dst_addr,
            "dst_port": self.dst_port,
            "length": self.length,
            "tlvs": [tlv.to_dict() for tlv in self.tlvs],
            "ssl": self.ssl.to_dict() if self.ssl else None,
        } | ({"tlvs_omitted": self.tlvs_omitted} if self.tlvs_omitted else {})


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What the bytes at the start of a stream say about a PROXY header.

    `version` is what the bytes claim to be (None: not a header at all). `length` is
    the number of bytes the header occupies (0 when there is none, or it is
    incomplete). `incomplete` means the data ends before the header does.
    """

    version: int | None
    header: ProxyHeader | None = None
    violations: tuple[Violation, ...] = ()
    length: int = 0
    incomplete: bool = False

    @property
    def valid(self) -> bool:
        return self.header is not None and not self.violations and not self.incomplete

    def to_dict(self, data_length: int | None = None) -> JsonDict:
        trailing = 0 if data_length is None else max(0, data_length - self.length)
        document: dict[str, Any] = {
            "proxy_header": self.header.to_dict() if self.header else None,
            "violations": [v.to_dict() for v in self.violations],
            "trailing": trailing,
        }
        if self.header is None:
            document["reason"] = self.violations[0].message(AS_THEY_ARE) if self.violations else NOT_A_HEADER
        return document


def incomplete(version: int, data: bytes, declared: int | None = None) -> ParseResult:
    """The data ends before the header does (`declared`: the length a whole v2 fixed part gives)."""
    violation = Violation(len(data), f"v{version}.incomplete", Incomplete(version, len(data), declared))
    return ParseResult(version=version, violations=(violation,), incomplete=True)


def address_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as RFC 5952 and Wireshark write it: IPv4-mapped ones as ::ffff:10.1.91.14."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)
