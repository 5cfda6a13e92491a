"""Live capture from a Linux packet socket, handed to the same tracker as files: records
of (frame_no, ts, linktype, frame, wire_length); with -w, the packets kept in pcap files
rotated like tcpdump's -C/-G/-W."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from proxydiag.services import DEFAULT_TABLE

MAIL_FILTER = DEFAULT_TABLE.bpf_filter()  # every port of the service table, 10000+ shifts included
TICK_SECONDS = 2.0
SOL_PACKET, PACKET_STATISTICS = 263, 6  # linux/if_packet.h: struct tpacket_stats {tp_packets, tp_drops}
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # linux/if_packet.h: a frame this host sent
ARPHRD_LOOPBACK = 772
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SNAPSHOT = 262_144  # the most of a frame read, as tcpdump's default snap length
BUFFER_BYTES = 32 << 20  # the kernel's queue for us: bursts wait here, not in Python
# What the link header is, by the interface's hardware type (linux/if_arp.h -> pcap link type).
LINKTYPE_OF_HARDWARE = {1: 1, 772: 1, 65534: 101, 778: 101, 776: 101, 768: 101, 769: 101, 823: 101, 512: 101}
_TIMESPEC = struct.Struct("qq")


def open_packet_socket(iface: str | None, bpf: str) -> socket.socket:
    """A packet socket on `iface` (every interface with None, as tcpdump -i any), the
    filter `bpf` in the kernel, the kernel's timestamp on every frame."""
    from scapy.arch.linux import attach_filter

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        if bpf:
            attach_filter(sock, bpf, iface or "lo")  # any: compiled for Ethernet framing, which lo has too
        if iface is not None:
            sock.bind((iface, ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, BUFFER_BYTES)  # SO_RCVBUFFORCE: root may pass rmem_max
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _drain(sock: socket.socket, limit: int | None) -> Iterator[tuple[float, int, bytes, int]]:
    """The frames the socket holds now (at most `limit`): (ts, link type, frame, length on
    the wire). A loopback frame is seen going out and coming in: only the second counts."""
    taken = 0
    while limit is None or taken < limit:
        try:
            frame, ancillary, flags, address = sock.recvmsg(SNAPSHOT, 64, socket.MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the socket was closed under us (a stop)
        taken += 1
        _, _, pkttype, hatype = address[:4]
        if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
            continue
        linktype = LINKTYPE_OF_HARDWARE.get(hatype)
        if linktype is None:
            continue  # a link this reader cannot decode (it would only count as unsupported)
        yield _timestamp(ancillary), linktype, frame, len(frame)


def _timestamp(ancillary: list) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return time.time()


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
    """Frames from an interface until `count` packets, `duration` seconds, or stop().

    Read straight from a Linux packet socket (as libpcap does), with the kernel's clock
    on every frame and the capture filter compiled into the kernel: no packet is ever
    dissected by scapy, which is used only to list interfaces and compile the filter.
    The socket's buffer is the queue; what the kernel could not hold it counts."""

    def __init__(self, iface: str, bpf: str = MAIL_FILTER, count: int = 0, duration: float | None = None,
                 write_path: str | None = None, on_tick: Callable[[], None] | None = None,
                 rotation: Rotation | None = None) -> None:
        self.iface, self.bpf, self.count, self.duration = iface, bpf, count, duration
        self.write_path, self.on_tick = write_path, on_tick
        self.rotation = rotation or Rotation()
        self.info = LiveInfo(path=f"live:{iface}")
        self._socket: socket.socket | None = None
        self._writer: PcapFiles | None = None
        self._stopped = False
        self.queue_drops = 0  # kept for the counters' shape: the kernel's buffer is the only queue
        self._kernel_drops = 0

    def start(self) -> None:
        from scapy.error import Scapy_Exception

        names = [name for _, name in socket.if_nameindex()]
        if self.iface not in names and self.iface != "any":
            raise LiveError(f"no interface {self.iface!r}; choose one of: {', '.join(names)} (or any)")
        if self.write_path is not None:
            self._open_writer()
        try:
            self._socket = open_packet_socket(None if self.iface == "any" else self.iface, self.bpf)
        except PermissionError:
            raise LiveError("no permission to capture: run as root or give the interpreter CAP_NET_RAW") from None
        except (OSError, Scapy_Exception) as error:
            raise LiveError(f"cannot capture on {self.iface}: {error}") from None

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
        self.dropped()  # the socket's last counters, before it closes
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._writer is not None:
            self._writer.close()

    def dropped(self) -> int:
        """Packets the kernel had to drop so far (its socket buffer was full)."""
        if self._socket is not None:
            with contextlib.suppress(OSError, struct.error):
                _, drops = struct.unpack("II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                self._kernel_drops += drops  # the kernel resets its counters when they are read
        return self._kernel_drops

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

    def _frames(self) -> Iterator[tuple[float, int, bytes, int]]:
        """Frames as they come, ticking, until the duration is up or a stop is asked for;
        then the ones the socket still holds."""
        started = last_tick = time.monotonic()
        sock = self._socket
        assert sock is not None
        while not self._stopped:
            now = time.monotonic()
            if self.duration is not None and now - started >= self.duration:
                break
            if self.on_tick is not None and now - last_tick >= TICK_SECONDS:
                last_tick = now
                self.on_tick()
            if select.select([sock], [], [], 0.2)[0]:
                yield from _drain(sock, limit=4096)
        yield from _drain(sock, limit=None)

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
        self._handle = open(path, "wb", buffering=1 << 16)  # noqa: SIM115 (closed by close())
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
