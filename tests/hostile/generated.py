"""Hostile files too big to keep in git, written at test time by small pure functions."""

from __future__ import annotations

import struct


def many_linktypes(count: int) -> bytes:
    """A pcapng with `count` interfaces, each of another unknown link type, and a packet
    on the first and the last: each unknown link type must be reported once, not per
    look-up, and the look-up must not be quadratic."""
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    idbs = b"".join(struct.pack("<IIHHII", 1, 20, 300 + index, 0, 0, 20) for index in range(count))
    packets = b"".join(struct.pack("<IIIIIII", 6, 36, index, 0, 0, 4, 4) + b"abcd" + struct.pack("<I", 36)
                       for index in (0, count - 1))
    return shb + idbs + packets


GENERATED = {"unknown-linktypes-65000.pcapng": lambda: many_linktypes(65000)}
