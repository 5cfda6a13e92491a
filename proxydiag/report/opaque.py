"""The identifiers a PROXY header carries for a client, a session or an account (the
UNIQUE_ID, custom and cloud TLVs) under `--anonymize`: each replaced by a pseudonym of
its own shape, the same in the decoded TLV and in the header's hex."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from proxydiag.jsontypes import JsonDict, JsonValue
from proxydiag.parsers import proxy_protocol
from proxydiag.report.pseudonyms import Pseudonyms

OPAQUE_TLVS = frozenset({"UNIQUE_ID", "CUSTOM", "EXPERIMENT", "FUTURE", "UNASSIGNED", "AWS", "AZURE", "GCP", "NETNS"})
# Cloud TLVs whose first byte names the kind of value (kept: it identifies no one).
SUBTYPED_TLVS = frozenset({proxy_protocol.PP2_TYPE_AWS, proxy_protocol.PP2_TYPE_AZURE})
# Ids the decoder gives as numbers, with the bytes they are on the wire (references.md):
# Azure's private endpoint link id is 4 bytes little-endian, GCP's PSC connection id 8 big-endian.
FIXED_WIDTH_IDS: dict[str, tuple[int, Literal["little", "big"]]] = {
    "private_endpoint_link_id": (4, "little"),
    "psc_connection_id": (8, "big"),
}

def opaque_tlv_spans(blob: bytes) -> list[tuple[int, int]]:
    """Where the identifying bytes of the opaque TLVs lie in a header's bytes, a value cut
    short by truncation included; a cloud TLV's subtype byte is not one of them."""
    found = []
    for tlv_type, start, stop in proxy_protocol.tlv_spans(blob):
        begin, end = start + (tlv_type in SUBTYPED_TLVS), min(stop, len(blob))
        if proxy_protocol.tlv_name(tlv_type) in OPAQUE_TLVS and begin < end:
            found.append((begin, end))
    return found


def is_opaque_tlv(value: JsonDict) -> bool:
    """A decoded TLV (type, name, length, offset, value) that identifies a client, a
    session or an account."""
    return value.get("name") in OPAQUE_TLVS and "value" in value and "type" in value and "offset" in value


def tlv_dicts(value: JsonValue) -> Iterator[JsonDict]:
    if isinstance(value, dict):
        if is_opaque_tlv(value):
            yield value
        for item in value.values():
            yield from tlv_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from tlv_dicts(item)


def opaque_value(value: JsonValue, pseudonyms: Pseudonyms) -> JsonValue:
    """The pseudonym of a TLV value, in the value's own shape (hex, text, number, fields)."""
    if isinstance(value, str):
        if re.fullmatch(r"(?:[0-9a-f]{2})*", value):
            return pseudonyms.blob(bytes.fromhex(value)).hex()
        return pseudonyms.blob(value.encode()).decode("latin-1")
    if isinstance(value, dict):
        return {key: opaque_field(key, item, pseudonyms) for key, item in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        size = max(1, (value.bit_length() + 7) // 8)
        return int.from_bytes(pseudonyms.blob(value.to_bytes(size, "big")), "big")
    return value


def opaque_field(key: str, item: JsonValue, pseudonyms: Pseudonyms) -> JsonValue:
    if key == "subtype":
        return item
    if key in FIXED_WIDTH_IDS and isinstance(item, int) and not isinstance(item, bool):
        size, order = FIXED_WIDTH_IDS[key]
        if 0 <= item < 1 << (8 * size):  # the bytes the header carries, so that its hex gets the same pseudonym
            return int.from_bytes(pseudonyms.blob(item.to_bytes(size, order)), order)
    return opaque_value(item, pseudonyms)
