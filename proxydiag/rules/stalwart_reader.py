"""What Stalwart's own PROXY parser makes of a header that breaks the specification.

Stalwart reads headers with the Rust crate `proxy-header` 0.1.2 (tibordp/proxy-header, used
by crates/common/src/network/listen.rs up to v0.16.18), which is laxer in some places and
stricter in others than HAProxy's doc/proxy-protocol.txt:
- v1: the byte after `PROXY` is not checked; the 107-byte limit applies only while the line
  is incomplete (a longer line that arrives whole in one read is accepted);
- v2: family/transport bytes other than 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32 are refused,
  whatever the command (AF_UNSPEC with STREAM, 0x01, among them);
- an SSL TLV shorter than 5 bytes is skipped alone: the session counts as plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxydiag.parsers.proxy_protocol import ParseResult

FAMILY_BYTES = frozenset({0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32})


@dataclass(frozen=True)
class Reading:
    accepted: bool  # Stalwart reads the header (and goes on) despite the broken rule
    says: str


def stalwart_reading(parsed: ParseResult, header_bytes: bytes) -> Reading | None:
    """What proxy-header 0.1.2 does with this header, where it differs from the rule broken; None
    where it refuses the header as the specification says."""
    rules = {violation.rule for violation in parsed.violations}
    if parsed.version == 2 and len(header_bytes) > 13 and header_bytes[13] not in FAMILY_BYTES:
        return Reading(False, f"Stalwart (proxy-header 0.1.2) refuses family/transport byte 0x{header_bytes[13]:02x} "
                              "whatever the command: \"invalid proxy header\", and the connection is dropped")
    if rules == {"v1.single-space"}:
        return Reading(True, "Stalwart (proxy-header 0.1.2) does not check the byte after PROXY and reads the "
                             "line anyway; HAProxy, nginx and Postfix refuse it")
    if "v1.max-length" in rules:
        return Reading(False, "Stalwart (proxy-header 0.1.2) refuses it when its first read holds 107 bytes "
                              "without the CRLF; a longer line that arrives whole in one read it accepts")
    if "v2.ssl-length" in rules:
        return Reading(True, "Stalwart (proxy-header 0.1.2) skips an SSL TLV shorter than 5 bytes: the session "
                             "counts as plaintext (STARTTLS offered again, PLAIN/LOGIN refused)")
    return None
