"""Live capture from a Linux packet socket, handed to the same tracker as files: records
of (frame_no, ts, linktype, frame, wire_length); with -w, the packets kept in pcap files
rotated like tcpdump's -C/-G/-W."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from proxydiag.capture.livesources import Frame, FrameSource, SourceError, open_source
from proxydiag.outputs import PRIVATE, open_replacing
from proxydiag.services import DEFAULT_TABLE

MAIL_FILTER = DEFAULT_TABLE.bpf_filter()  # every port of the service table, 10000+ shifts included
TICK_SECONDS = 2.0
class LiveError(Exception):
    """The capture cannot start: one line for the user."""


@dataclass
class LiveInfo:
    path: str
    format: str = "live"
    linktypes: list[int] = field(default_factory=list)
    packets: int = 0
    bytes_read: int = 0
    size: int | None = None
    damaged: str | None = None


class LiveCapture:
    """Frames from an interface until `count` packets, `duration` seconds, or stop(), from
    the fastest source there is (`livesources`): tcpdump's ring buffer, else a packet socket."""

    def __init__(self, iface: str, bpf: str = MAIL_FILTER, count: int = 0, duration: float | None = None,
                 write_path: str | None = None, on_tick: Callable[[], None] | None = None,
                 rotation: Rotation | None = None) -> None:
        self.iface, self.bpf, self.count, self.duration = iface, bpf, count, duration
        self.write_path, self.on_tick = write_path, on_tick
        self.rotation = rotation or Rotation()
        self.info = LiveInfo(path=f"live:{iface}")
        self._source: FrameSource | None = None
        self._writer: PcapFiles | None = None
        self._stopped = False

    def start(self) -> None:
        names = [name for _, name in socket.if_nameindex()]
        if self.iface not in names and self.iface != "any":
            raise LiveError(f"no interface {self.iface!r}; choose one of: {', '.join(names)} (or any)")
        if self.write_path is not None:
            self._open_writer()
        try:
            self._source = open_source(self.iface, self.bpf)
        except SourceError as error:
            raise LiveError(f"cannot capture on {self.iface}: {error}") from None
        except PermissionError:
            raise LiveError("no permission to capture: run as root or with CAP_NET_RAW") from None

    def _open_writer(self) -> None:
        assert self.write_path is not None
        try:
            self._writer = PcapFiles(self.write_path, self.rotation)
            self._writer.open(time.time())
        except OSError as error:
            raise LiveError(f"cannot write {error.filename or self.write_path}: {error.strerror or error}") from None

    def request_stop(self) -> None:
        """End the capture soon (from a signal handler): the loop sees it within 0.2 s."""
        self._stopped = True

    def stop(self) -> None:
        self._stopped = True
        if self._source is not None:
            self._source.close()
            if self._source.dropped:
                self.info.damaged = (f"the kernel dropped {self._source.dropped} packets: the analysis could not "
                                     "keep up with the interface")
        if self._writer is not None:
            self._writer.close()

    def dropped(self) -> int:
        """Packets the kernel had to drop so far (its capture buffer was full)."""
        if self._source is None:
            return 0
        self._source.ask_dropped()
        return self._source.dropped

    def __iter__(self) -> Iterator[tuple[int, float, int, bytes, int]]:
        for ts, linktype, frame, wire_length in self._frames():
            if linktype not in self.info.linktypes:
                self.info.linktypes.append(linktype)
            self._write(ts, linktype, frame)
            self.info.packets += 1
            self.info.bytes_read += len(frame)
            yield self.info.packets, ts, linktype, frame, wire_length
            if self.count and self.info.packets >= self.count:
                break
        self.stop()

    def _frames(self) -> Iterator[Frame]:
        """Frames as they come, ticking, until the duration is up or a stop is asked for;
        then the ones the capture still holds."""
        started = last_tick = time.monotonic()
        source = self._source
        assert source is not None
        while not self._stopped and not source.ended:
            now = time.monotonic()
            if self.duration is not None and now - started >= self.duration:
                break
            if self.on_tick is not None and now - last_tick >= TICK_SECONDS:
                last_tick = now
                self.on_tick()
            yield from source.frames(0.2)
        yield from source.rest()

    def _write(self, ts: float, linktype: int, frame: bytes) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(ts, linktype, frame)
        except OSError as error:
            self._writer = None
            self.info.damaged = (f"cannot write {error.filename or self.write_path}: {error.strerror or error}; "
                                 "later packets were analysed but not written")


@dataclass(frozen=True)
class Rotation:
    """tcpdump's -C, -G and -W for -w."""

    megabytes: float | None = None  # -C: a new file once the current one holds more than this many million bytes
    seconds: float | None = None  # -G: a new file this often, its name passed through strftime
    keep: int | None = None  # -W: at most this many files; the oldest is deleted


PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
SNAPLEN = 262144
FLUSH_SECONDS = 1.0


class PcapFiles:
    """Packets written to pcap files (microsecond, little-endian), rotated like tcpdump:
    by size (-C: checked before each packet, so a file ends just past the limit), by time
    (-G: measured in packet time from the file's opening; the name is strftime'd in local
    time), and at most -W files kept. A file whose name is already taken in this run
    (size rotation, or a -G name without the seconds that tell it apart) is NAME1, then
    NAME2 (tcpdump's numbering). Unlike tcpdump, -G with -W does not stop after COUNT
    files: the oldest is deleted, as a service wants. A change of link type also starts a
    new file (a pcap holds one)."""

    def __init__(self, pattern: str, rotation: Rotation = Rotation()) -> None:
        self.pattern, self.rotation = pattern, rotation
        self.kept: list[str] = []  # the files written, oldest first
        self._handle: IO[bytes] | None = None
        self._opened_at = 0.0
        self._linktype: int | None = None
        self._size = 0
        self._sequence = 0
        self._name = ""
        self._flushed = time.monotonic()

    def open(self, ts: float, linktype: int | None = None) -> None:
        """Start the next file, its name for the time `ts`."""
        self.close()
        name = time.strftime(self.pattern, time.localtime(ts)) if self.rotation.seconds else self.pattern
        self._sequence = self._sequence + 1 if name == self._name else 0
        self._name = name
        path = name + (str(self._sequence) if self._sequence else "")
        self._handle = open_replacing(path, PRIVATE, buffering=1 << 16)  # a new file: no link followed, 0600
        self._opened_at, self._linktype, self._size = ts, linktype, 0
        if linktype is not None:
            self._write_header(linktype)
        if path in self.kept:
            self.kept.remove(path)
        self.kept.append(path)
        self._forget_oldest()

    def write(self, ts: float, linktype: int, frame: bytes) -> None:
        if self._handle is None or self._due(ts, linktype):
            self.open(ts, linktype)
        elif self._linktype is None:
            self._write_header(linktype)
        assert self._handle is not None
        seconds = int(ts)
        micros = min(round((ts - seconds) * 1_000_000), 999_999)
        kept = frame[:SNAPLEN]
        self._handle.write(RECORD_HEADER.pack(seconds, micros, len(kept), len(frame)))
        self._handle.write(kept)
        self._size += RECORD_HEADER.size + len(kept)
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _due(self, ts: float, linktype: int) -> bool:
        """A new file before this packet: the size or the time is up, or the link type changed."""
        limit, seconds = self.rotation.megabytes, self.rotation.seconds
        return ((limit is not None and self._size > limit * 1_000_000)
                or (seconds is not None and ts - self._opened_at >= seconds)
                or (self._linktype is not None and linktype != self._linktype))

    def _write_header(self, linktype: int) -> None:
        assert self._handle is not None
        self._handle.write(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
        self._linktype = linktype
        self._size += PCAP_HEADER.size

    def _forget_oldest(self) -> None:
        while self.rotation.keep is not None and len(self.kept) > self.rotation.keep:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.kept.pop(0))
