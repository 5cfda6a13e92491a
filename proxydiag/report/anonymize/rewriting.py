"""The second pass: each string rewritten with the pseudonyms learned, TLV values in their
own shape, header hex byte for byte."""

from __future__ import annotations

import ipaddress
import re

from proxydiag.jsontypes import JsonDict, JsonValue
from proxydiag.parsers import proxy_protocol
from proxydiag.report.anonymize.patterns import (
    CUT_TEXT,
    CUT_TOKEN,
    FIXED_WIDTH_IDS,
    HEX_BEFORE_CUT,
    HEX_BLOB,
    HOST_AFTER,
    IPV4,
    IPV6,
    OPAQUE_TLVS,
    ipv6_of,
    is_ip,
    opaque_tlv_spans,
)
from proxydiag.report.anonymize.pseudonyms import Pseudonyms


class Rewriter:
    def __init__(self, pseudonyms: Pseudonyms, hostnames: set[str]) -> None:
        self.pseudonyms = pseudonyms
        names = sorted(hostnames, key=len, reverse=True)
        self.hostname = (
            re.compile(HOST_AFTER + "(" + "|".join(map(re.escape, names)) + r")(?![\w-])", re.I)
            if names else None
        )
        paths = sorted(pseudonyms.paths, key=len, reverse=True)
        self.paths = re.compile("|".join(map(re.escape, paths))) if paths else None

        self.done: dict[str, str] = {}

    REMEMBERED = 65_536  # rewritten texts kept for repeats (a stream of connections has no end)

    def __call__(self, text: str) -> str:
        done = self.done.get(text)
        if done is None:
            if len(self.done) >= self.REMEMBERED:
                self.done.clear()
            done = self.done[text] = self._rewrite(text)
        return done

    def _rewrite(self, text: str) -> str:
        if self.paths is not None:
            text = self.paths.sub(lambda m: self.pseudonyms.paths[m.group()], text)
        text = HEX_BLOB.sub(lambda m: self._hex(m.group(), text.startswith("...", m.end())), text) if len(text) >= 12 else text
        text = self._text(text)
        return CUT_TOKEN.sub("[cut]", text) if text.endswith("...") and not HEX_BEFORE_CUT.search(text) else text

    def _text(self, text: str) -> str:
        if "." in text:
            text = IPV4.sub(lambda m: self.pseudonyms.address(m.group()), text)
        if text.count(":") >= 2:
            text = IPV6.sub(lambda m: self._ipv6(m.group()), text)
        if self.hostname is not None:
            text = self.hostname.sub(lambda m: self.pseudonyms.hostname(m.group()), text)
        return text

    def _ipv6(self, token: str) -> str:
        ip = ipv6_of(token)
        if ip is None:
            return token
        port = "" if is_ip(token) else ":" + token.rpartition(":")[2]
        return self.pseudonyms.address(str(ip)) + port

    def _hex(self, blob: str, cut: bool = False) -> str:
        data = bytes.fromhex(blob)
        if proxy_protocol.header_version_at_start(data) == 2:  # each TLV's value where it stands
            data = self._opaque_in_place(data)
        else:
            for value, pseudonym in self.pseudonyms.opaque.items():
                data = data.replace(value, pseudonym)
        for original in list(self.pseudonyms.originals):
            ip = ipaddress.ip_address(original)
            if not (ip.is_unspecified or (ip.version == 6 and ip.is_loopback)):
                data = data.replace(ip.packed, ipaddress.ip_address(self.pseudonyms.address(original)).packed)
        # v1 headers and any text inside: rewritten as text (pseudonyms are ASCII)
        text = self._text(data.decode("latin-1"))
        return (CUT_TEXT.sub("", text) if cut else text).encode("latin-1").hex()


    def _opaque_in_place(self, header: bytes) -> bytes:
        rewritten = bytearray(header)
        for begin, end in opaque_tlv_spans(header):
            rewritten[begin:end] = self.pseudonyms.blob(header[begin:end])
        return bytes(rewritten)


def is_opaque_tlv(value: JsonDict) -> bool:
    """A decoded TLV (type, name, length, offset, value) that identifies a client, a
    session or an account."""
    return value.get("name") in OPAQUE_TLVS and "value" in value and "type" in value and "offset" in value


def opaque_value(value: JsonValue, pseudonyms: Pseudonyms) -> JsonValue:
    """The pseudonym of a TLV value, in the value's own shape (hex, text, number, fields)."""
    if isinstance(value, str):
        if re.fullmatch(r"(?:[0-9a-f]{2})*", value):
            return pseudonyms.blob(bytes.fromhex(value)).hex()
        return pseudonyms.blob(value.encode()).decode("latin-1")
    if isinstance(value, dict):
        return {key: _opaque_field(key, item, pseudonyms) for key, item in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        size = max(1, (value.bit_length() + 7) // 8)
        return int.from_bytes(pseudonyms.blob(value.to_bytes(size, "big")), "big")
    return value


def _opaque_field(key: str, item: JsonValue, pseudonyms: Pseudonyms) -> JsonValue:
    if key == "subtype":
        return item
    if key in FIXED_WIDTH_IDS and isinstance(item, int) and not isinstance(item, bool):
        size, order = FIXED_WIDTH_IDS[key]
        if 0 <= item < 1 << (8 * size):  # the bytes the header carries, so that its hex gets the same pseudonym
            return int.from_bytes(pseudonyms.blob(item.to_bytes(size, order)), order)
    return opaque_value(item, pseudonyms)


# The document's own keys (`command`, `src_addr`): never rewritten, even where a server
# named itself so (`250-command`) and the word became a host name to hide. Keys that hold
# data (an address, an endpoint, a host name) have a dot or a colon.
_SCHEMA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def transform(value: JsonValue, rewrite: Rewriter) -> JsonValue:
    if isinstance(value, str):
        return rewrite(value)
    if isinstance(value, dict):  # keys too: counts per address are keyed by the address
        if is_opaque_tlv(value):
            value = {**value, "value": opaque_value(value["value"], rewrite.pseudonyms)}
        return {(rewrite(key) if isinstance(key, str) and not _SCHEMA_KEY.fullmatch(key) else key): transform(item, rewrite)
                for key, item in value.items()}
    if isinstance(value, list):
        return [transform(item, rewrite) for item in value]
    return value
