"""Reassembly of the opening of one direction of a TCP connection.

Only the first `OPENING_LIMIT` bytes are kept (that is all the diagnosis needs), in at
most `MAX_SEGMENTS` segments, whatever order, overlap or retransmission they arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

OPENING_LIMIT = 8192
MAX_SEGMENTS = 128
SEQ_MOD = 1 << 32
HALF_SEQ = 1 << 31


class Chunk(NamedTuple):
    """Where a piece of a reassembled stream came from (a tuple: thousands are made a second)."""

    offset: int
    frame: int
    ts: float


@dataclass(frozen=True, slots=True)
class Stream:
    """The reassembled opening of one direction of a connection."""

    data: bytes
    chunks: tuple[Chunk, ...]
    start_seen: bool
    gap_at: int | None
    retransmissions: int
    out_of_order: int
    overlap_conflicts: int
    snapped_bytes: int
    segments: int
    fin: tuple[int, float] | None
    rst: tuple[int, float] | None

    @property
    def first_frame(self) -> int | None:
        return self.chunks[0].frame if self.chunks else None

    @property
    def first_ts(self) -> float | None:
        return self.chunks[0].ts if self.chunks else None

    def position(self, offset: int) -> Chunk | None:
        """The chunk that carried the byte at `offset`."""
        found = None
        for chunk in self.chunks:
            if chunk.offset > offset:
                break
            found = chunk
        return found


NO_SEGMENTS: list[tuple[int, int, float, bytes]] = []  # shared, never appended to: most flows of a SYN flood carry no data


class Direction:
    __slots__ = (
        "base",
        "start_seen",
        "segments",
        "stored",
        "full",
        "snapped",
        "fin",
        "rst",
        "count",
    )

    def __init__(self) -> None:
        self.base: int | None = None
        self.start_seen = False
        self.segments: list[tuple[int, int, float, bytes]] = NO_SEGMENTS  # a list of its own from the first one
        self.stored = 0
        self.full = False
        self.snapped = 0
        self.fin: tuple[int, float] | None = None
        self.rst: tuple[int, float] | None = None
        self.count = 0

    def add(self, seq: int, frame: int, ts: float, data: bytes, snapped: int) -> None:
        self.count += 1
        if self.base is None:
            self.base = seq
        offset = (seq - self.base) % SEQ_MOD
        if offset >= HALF_SEQ or offset >= OPENING_LIMIT:
            if offset < HALF_SEQ:
                self.full = True
            return
        self.snapped += snapped
        if self.segments is NO_SEGMENTS:
            self.segments = []
        kept = data[: OPENING_LIMIT - offset]
        self.segments.append((offset, frame, ts, kept))
        self.stored += len(kept)
        if len(self.segments) > MAX_SEGMENTS:
            # Segments may arrive in any order (3,000 one-byte ones in reverse): the opening
            # is what matters, so the segment furthest from it makes room. When that is the
            # newest one, the opening is complete as far as the bound allows: the rest of
            # the stream costs a look-up only.
            furthest = max(range(len(self.segments)), key=lambda index: self.segments[index][0])
            self.stored -= len(self.segments.pop(furthest)[3])
            if furthest == len(self.segments):
                self.full = True
        if self.stored >= OPENING_LIMIT:
            self.full = True

    def assemble(self) -> Stream:
        segments = self.segments
        if _in_order_without_overlap(segments):  # the usual case, in one pass
            chunks = tuple([Chunk(offset, frame, ts) for offset, frame, ts, _ in segments])
            return self._stream(b"".join([payload for *_, payload in segments]), chunks, None, 0, 0, 0)
        return self._reassemble()

    def _reassemble(self) -> Stream:
        ordered = sorted(enumerate(self.segments), key=lambda item: (item[1][0], item[0]))
        out_of_order = sum(1 for rank, (arrival, _) in enumerate(ordered) if arrival != rank)
        data = bytearray()
        chunks: list[Chunk] = []
        gap_at = None
        retransmissions = conflicts = 0
        for _, (offset, frame, ts, payload) in ordered:
            end = offset + len(payload)
            if offset > len(data):
                gap_at = len(data)
                break
            if end <= len(data):
                retransmissions += 1
                conflicts += data[offset:end] != payload
                continue
            overlap = len(data) - offset
            if overlap and data[offset:] != payload[:overlap]:
                conflicts += 1
            chunks.append(Chunk(len(data), frame, ts))
            data += payload[overlap:]
        return self._stream(bytes(data), tuple(chunks), gap_at, retransmissions, out_of_order, conflicts)

    def _stream(self, data: bytes, chunks: tuple[Chunk, ...], gap_at: int | None, retransmissions: int,
                out_of_order: int, conflicts: int) -> Stream:
        return Stream(
            data=data,
            chunks=chunks,
            start_seen=self.start_seen,
            gap_at=gap_at,
            retransmissions=retransmissions,
            out_of_order=out_of_order,
            overlap_conflicts=conflicts,
            snapped_bytes=self.snapped,
            segments=self.count,
            fin=self.fin,
            rst=self.rst,
        )


def _in_order_without_overlap(segments: list[tuple[int, int, float, bytes]]) -> bool:
    expected = 0
    for offset, _, _, payload in segments:
        if offset != expected:
            return False
        expected += len(payload)
    return True


SILENT = Direction()  # shared by every direction that has sent nothing yet; never changed
