"""Where described connections wait between reading and judging, in flat memory.

A capture of hundreds of thousands of connections is judged in two passes (the
expectations of an endpoint need all its connections), so the connections must be
kept somewhere. The first `spill_after` are kept in memory; past that, every
connection is pickled into one temporary file, and only three numbers per connection
stay in memory (where it is in the file, and its two sort keys). The store is a
read-only sequence in report order, (input, first frame), and connections are
numbered in that order, so a report reads the same however the capture was read.
"""

from __future__ import annotations

import dataclasses
import pickle
import tempfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from typing import IO, overload

from proxydiag.facts.model import Connection

SPILL_AFTER = 8_192  # connections kept in memory (about 7 KB each) before the file takes over
LIVE_HELD = 256  # the same for sniff, whose memory must not grow over a long run


class ConnectionStore(Sequence[Connection]):
    def __init__(self, spill_after: int | None = None) -> None:
        self.spill_after = SPILL_AFTER if spill_after is None else spill_after
        self._held: list[Connection] = []
        self._file: IO[bytes] | None = None
        self._offsets = array("q")
        self._inputs = array("l")
        self._frames = array("q")
        self._starts = array("d")
        self._report_order: list[int] | None = None  # slots in (input, first frame) order
        self._number_of_slot: array[int] | None = None  # the connection number of each slot
        self.prepare: Callable[[Connection], None] | None = None  # what judging adds to each one read
        self._rendered: IO[bytes] | None = None  # each connection's JSON, written as it was judged
        self._rendered_at = array("q")

    # Filling

    def append(self, conn: Connection) -> None:
        self._report_order = None
        self._inputs.append(conn.input)
        self._frames.append(conn.first_frame)
        self._starts.append(conn.start_ts)
        if self._file is None and len(self._held) < self.spill_after:
            self._held.append(conn)
            return
        if self._file is None:
            self._spill_held()
        self._write(conn)

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def _spill_held(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="proxydiag-connections-")
        held, self._held = self._held, []
        for conn in held:
            self._write(conn)

    def _write(self, conn: Connection) -> None:
        assert self._file is not None
        self._offsets.append(self._file.tell())
        _Pickler(self._file, protocol=pickle.HIGHEST_PROTOCOL).dump(conn)

    def close(self) -> None:
        for file in (self._file, self._rendered):
            if file is not None:
                file.close()

    # What judging wrote of each connection: read back as text, never unpickled again

    def keep_rendered(self, number: int, text: str) -> None:
        if self._rendered is None:
            self._rendered = tempfile.TemporaryFile(prefix="proxydiag-rendered-")
            self._rendered_at = array("q", [-1]) * len(self)
        self._rendered_at[self._order()[number - 1]] = self._rendered.tell()
        self._rendered.write(text.encode() + b"\n")

    def rendered(self) -> Iterator[str] | None:
        """Every connection's JSON in report order, if judging wrote them all."""
        file, offsets = self._rendered, self._rendered_at
        if file is None or len(offsets) != len(self) or -1 in offsets:
            return None
        return self._read_rendered(file, offsets)

    def _read_rendered(self, file: IO[bytes], offsets: array[int]) -> Iterator[str]:
        for slot in self._order():
            file.seek(offsets[slot])
            yield file.readline()[:-1].decode()

    # Reading

    def _slot(self, slot: int) -> Connection:
        if self._file is None:
            conn = self._held[slot]
        else:
            self._file.seek(self._offsets[slot])
            conn = pickle.load(self._file)
        conn.id = self._numbers()[slot]
        if self.prepare is not None:
            self.prepare(conn)
        return conn

    def _order(self) -> list[int]:
        if self._report_order is None:
            inputs, frames = self._inputs, self._frames
            self._report_order = sorted(range(len(inputs)), key=lambda slot: (inputs[slot], frames[slot]))
            numbers = array("q", bytes(8 * len(inputs)))
            for number, slot in enumerate(self._report_order, start=1):
                numbers[slot] = number
            self._number_of_slot = numbers
        return self._report_order

    def _numbers(self) -> array[int]:
        self._order()
        assert self._number_of_slot is not None
        return self._number_of_slot

    def by_start(self) -> Iterator[Connection]:
        """Every connection once, in the order they started (ties in report order): the
        order in which the legs of one conversation are met close together."""
        starts, numbers = self._starts, self._numbers()
        for slot in sorted(range(len(starts)), key=lambda slot: (starts[slot], numbers[slot])):
            yield self._slot(slot)

    def __len__(self) -> int:
        return len(self._inputs)

    def __iter__(self) -> Iterator[Connection]:
        for slot in self._order():
            yield self._slot(slot)

    @overload
    def __getitem__(self, index: int) -> Connection: ...

    @overload
    def __getitem__(self, index: slice) -> list[Connection]: ...

    def __getitem__(self, index: int | slice) -> Connection | list[Connection]:
        order = self._order()
        if isinstance(index, slice):
            return [self._slot(slot) for slot in order[index]]
        return self._slot(order[index])


class _Pickler(pickle.Pickler):
    """Slotted dataclasses (the facts of a connection) pickled as a tuple of their fields:
    the standard way looks the fields up by name, object by object, at several times the cost."""

    def reducer_override(self, obj):
        names = _slotted_fields(type(obj))
        if names is None:
            return NotImplemented
        return _restore, (type(obj), _getters[type(obj)](obj) if len(names) > 1 else (getattr(obj, names[0]),))


_fields: dict[type, tuple[str, ...] | None] = {}
_getters: dict[type, attrgetter[tuple[object, ...]]] = {}


def _slotted_fields(cls: type) -> tuple[str, ...] | None:
    if cls not in _fields:
        slotted = dataclasses.is_dataclass(cls) and "__slots__" in cls.__dict__
        names = tuple(item.name for item in dataclasses.fields(cls)) if slotted else None
        _fields[cls] = names or None
        if names and len(names) > 1:
            _getters[cls] = attrgetter(*names)
    return _fields[cls]


def _restore(cls: type, state: tuple[object, ...]) -> object:
    obj: object = object.__new__(cls)
    for name, value in zip(_slotted_fields(cls) or (), state, strict=True):
        object.__setattr__(obj, name, value)
    return obj
