"""The hex of a PROXY header as evidence: the header's own structure, never the client's
bytes that a wrong length swallowed."""

from __future__ import annotations

import re

from proxydiag.parsers import proxy_protocol as pp
from proxydiag.parsers.redact import secret_at

_V1_FIELDS = re.compile(rb"PROXY(?: [!-~]{1,39}){0,5}(?:\r\n)?")


def header_evidence(data: bytes, limit: int = 64) -> str:
    """The hex of a PROXY header for a report: only the bytes that read as the header's
    own structure. A header whose length swallows the client's first command (`a1
    LOGIN user pass`) must not carry that command into the evidence, so whatever does
    not parse as fields or known TLVs is counted, not shown."""
    shown = data[: _structured_length(data)]
    secret = secret_at(shown)
    shown = shown if secret is None else shown[:secret]
    text = shown[:limit].hex() + ("..." if len(shown) > limit else "")
    hidden = len(data) - len(shown)
    return text + (f" (+{hidden} bytes not shown)" if hidden else "")


def _structured_length(data: bytes) -> int:
    version = pp.header_version_at_start(data)
    if version == 1:
        match = _V1_FIELDS.match(data)
        return min(match.end() if match else 0, pp.V1_MAX_LENGTH)
    if version != 2 or len(data) < pp.V2_FIXED_LENGTH:
        return min(len(data), pp.V2_FIXED_LENGTH)
    end = pp.V2_FIXED_LENGTH + int.from_bytes(data[14:16], "big")
    offset = pp.V2_FIXED_LENGTH + pp.ADDRESS_BLOCK_LENGTH.get(data[13] >> 4, 0)
    if offset > end or end > len(data) or data[12] >> 4 != 2:
        return pp.V2_FIXED_LENGTH  # cut short or no v2 header after all: past the fixed part may be the client's bytes
    for tlv_type, _start, stop in pp.tlv_spans(data):
        if pp.tlv_name(tlv_type) in ("UNASSIGNED", "FUTURE") or stop > end:
            break
        offset = stop
    return offset
