"""The first pass: every original and every name to hide, learned before anything is
rewritten (a pseudonym must equal no original, wherever in the document that appears)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from proxydiag.jsontypes import JsonDict, JsonValue
from proxydiag.parsers import proxy_protocol
from proxydiag.report.anonymize.patterns import (
    HEX_BLOB,
    HOSTNAME,
    IPV4,
    IPV6,
    LINE_BREAK,
    NAMED_HOSTS,
    NOT_HOSTNAMES,
    NOT_HOSTS,
    OWN_TEXT_KEYS,
    REPLY_LINE,
    WIRE_KEYS,
    ip_of,
    ipv6_of,
    opaque_tlv_spans,
)
from proxydiag.report.anonymize.pseudonyms import Pseudonyms
from proxydiag.report.anonymize.rewriting import Rewriter, is_opaque_tlv, opaque_value


class Learning:
    """What the rewriting needs to know before it starts, gathered piece by piece: every
    original address (no pseudonym may equal one), the host names, the input paths, and
    the opaque TLV values (named before any hex holding the same bytes is rewritten)."""

    SEEN_TEXTS = 65_536  # texts already learned from, remembered to skip repeats (then forgotten)

    def __init__(self, pseudonyms: Pseudonyms) -> None:
        self.pseudonyms = pseudonyms
        self.hostnames: set[str] = set()
        self.seen: set[str] = set()

    def learn(self, key: str, value: JsonValue) -> None:
        """A document's `key` and its value (for connections, one of them)."""
        if key == "inputs" or key == "proxy_configs" or key == "stalwart_config":
            for path in _paths({key: value}):
                self.pseudonyms.path(path)
        if key not in WIRE_KEYS:
            return
        texts = [text for text in dict.fromkeys(_strings(value)) if text not in self.seen]
        from_the_value = len(texts)
        if len(self.seen) > self.SEEN_TEXTS:
            self.seen.clear()
        self.seen.update(texts)
        blobs = [bytes.fromhex(match) for text in texts if len(text) >= 12 for match in HEX_BLOB.findall(text)]
        for blob in blobs:  # addresses and ids a header in evidence holds, parsed or not
            header = proxy_protocol.parse(blob).header
            texts += [addr for addr in (header.src_addr, header.dst_addr) if addr] if header else []
            texts.append(blob.decode("latin-1"))
            for begin, end in opaque_tlv_spans(blob):
                self.pseudonyms.blob(blob[begin:end])
        originals = self.pseudonyms.originals
        for text in texts:
            if "." in text:
                originals.update(str(ip) for ip in map(ip_of, IPV4.findall(text)) if ip)
            if text.count(":") >= 2:
                originals.update(str(ip) for ip in map(ipv6_of, IPV6.findall(text)) if ip)
        own = set(_own_texts(value))
        self.hostnames |= _hostnames([text for text in texts[:from_the_value] if text not in own]
                                     + texts[from_the_value:])
        for tlv in _tlv_dicts(value):
            opaque_value(tlv["value"], self.pseudonyms)

    def rewriter(self) -> Rewriter:
        return Rewriter(self.pseudonyms, self.hostnames)



def _hostnames(texts: list[str]) -> set[str]:
    names: set[str] = set()
    for text in texts:
        names.update(name for name in HOSTNAME.findall(text) if not NOT_HOSTNAMES.search(name) and ip_of(name) is None)
        for name in [*_reply_hosts(text), *(found for pattern in NAMED_HOSTS for found in pattern.findall(text))]:
            name = name.rstrip(".-")
            if name and name.lower() not in NOT_HOSTS and ip_of(name) is None and not re.fullmatch(r"[\d.]+", name):
                names.add(name)
    return names


def _reply_hosts(text: str) -> Iterator[str]:
    """The host a mail reply names: the first word of its first line (a 220 greeting, a 250
    EHLO reply). Its continuation lines name none: `250-PIPELINING` is a capability."""
    continued = None  # the code of the line before, when it announced more (`250-`)
    for line in LINE_BREAK.split(text):
        match = REPLY_LINE.match(line)
        if match and match.group(1) != continued:
            yield match.group(3)
        continued = match.group(1) if match and match.group(2) == "-" else None



STANDARD_STREAMS = frozenset({"-", "<stdin>", "live"})  # names no one's files


def _paths(document: JsonDict) -> list[str]:
    found = [item["path"] for item in document.get("inputs") or [] if item.get("path")]
    found += [config["path"] for config in document.get("proxy_configs") or [] if config.get("path")]
    config = document.get("stalwart_config") or {}
    found += [config["path"]] if config.get("path") else []
    return [path for path in found if path not in STANDARD_STREAMS]


def _tlv_dicts(value: JsonValue) -> Iterator[JsonDict]:
    if isinstance(value, dict):
        if is_opaque_tlv(value):
            yield value
        for item in value.values():
            yield from _tlv_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _tlv_dicts(item)



def _own_texts(value: JsonValue) -> Iterator[str]:
    """The texts proxydiag wrote itself (under OWN_TEXT_KEYS) inside `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in OWN_TEXT_KEYS and isinstance(item, str):
                yield item
            else:
                yield from _own_texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _own_texts(item)


def _strings(value: JsonValue) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
