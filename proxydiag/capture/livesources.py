"""Where live frames come from: tcpdump, else a packet socket of our own.

tcpdump (libpcap) captures into a memory-mapped ring that the kernel fills without
waiting for us, with the filter in the kernel; it writes pcap records to a pipe that we
read in large chunks. That keeps up with bursts a plain packet socket cannot: on
loopback every queued frame holds a whole socket buffer's worth of kernel memory, so a
socket's receive buffer fills after a few hundred frames. Without tcpdump, a packet
socket is read directly (the filter compiled by scapy), which is enough for a quiet host.
Either way no frame is dissected by scapy, and the kernel's drop counter is reported."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Protocol

Frame = tuple[float, int, bytes, int]  # (timestamp, link type, frame, length on the wire)

SNAPLEN = 262_144  # tcpdump's default: whole frames
RING_KIB = 65_536  # tcpdump -B: the kernel's ring for us, in KiB
STARTUP_SECONDS = 10.0
DROPPED = re.compile(rb"(?<!\d)(\d+) packets? dropped by kernel")


class SourceError(Exception):
    """The capture could not start: one line for the user."""


class FrameSource(Protocol):
    dropped: int  # by the kernel, as last reported
    ended: bool  # the source stopped on its own (tcpdump died)

    def frames(self, timeout: float) -> Iterator[Frame]: ...

    def rest(self) -> Iterator[Frame]: ...

    def ask_dropped(self) -> None: ...

    def close(self) -> None: ...


def open_source(iface: str, bpf: str) -> FrameSource:
    binary = shutil.which("tcpdump") or next(
        (path for path in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if os.access(path, os.X_OK)), None)
    if binary is not None:
        return Tcpdump(binary, iface, bpf)
    return PacketSocket(None if iface == "any" else iface, bpf)


# --- tcpdump ---------------------------------------------------------------------------


class Tcpdump:
    def __init__(self, binary: str, iface: str, bpf: str) -> None:
        command = [binary, "-i", iface, "-n", "-s", str(SNAPLEN), "-B", str(RING_KIB), "-U",
                   "-w", "-"] + ([bpf] if bpf else [])
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._out, self._err = self.process.stdout.fileno(), self.process.stderr.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._err, False)
        self._said = b""  # tcpdump's stderr
        self._records = PcapStream()
        self.dropped = 0
        self.ended = False
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while b"listening on" not in self._said:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._read_stderr()
                self.close()
                raise SourceError(_last_words(self._said) or "tcpdump did not start")
            select.select([self._err], [], [], 0.1)
            self._read_stderr()

    def frames(self, timeout: float) -> Iterator[Frame]:
        ready = select.select([self._out, self._err], [], [], timeout)[0]
        if self._err in ready:
            self._read_stderr()
        if self._out in ready:
            chunk = _read(self._out)
            if chunk == b"":
                self.ended = True
            elif chunk:
                yield from self._records.feed(chunk)

    def rest(self) -> Iterator[Frame]:
        """What tcpdump still writes once told to stop, to the end of its output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        os.set_blocking(self._out, True)
        while chunk := os.read(self._out, 1 << 20):
            yield from self._records.feed(chunk)
        self.process.wait()
        self._read_stderr()

    def ask_dropped(self) -> None:
        """tcpdump prints its counters on SIGUSR1; they are read with its next words."""
        self._read_stderr()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._read_stderr()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def _read_stderr(self) -> None:
        while chunk := _read(self._err):
            self._said = (self._said + chunk)[-8192:]
        counts = DROPPED.findall(self._said)
        if counts:
            self.dropped = int(counts[-1])


def _read(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now: None if nothing yet, b"" at its end."""
    try:
        return os.read(fd, 1 << 20)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _last_words(said: bytes) -> str:
    lines = [line.strip() for line in said.decode("utf-8", "replace").splitlines() if line.strip()]
    words = lines[-1] if lines else ""
    return words.removeprefix("tcpdump: ")


class PcapStream:
    """pcap records from a stream that arrives in pieces of any size."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._record: struct.Struct | None = None
        self._fraction = 1e-6
        self.linktype = 1

    def feed(self, chunk: bytes) -> Iterator[Frame]:
        self._buffer += chunk
        if self._record is None and not self._read_header():
            return
        record, buffer, offset = self._record, self._buffer, 0
        assert record is not None
        while len(buffer) - offset >= 16:
            seconds, fraction, captured, wire = record.unpack_from(buffer, offset)
            end = offset + 16 + captured
            if end > len(buffer):
                break
            yield seconds + fraction * self._fraction, self.linktype, bytes(buffer[offset + 16:end]), wire
            offset = end
        del buffer[:offset]

    def _read_header(self) -> bool:
        if len(self._buffer) < 24:
            return False
        magic = bytes(self._buffer[:4])
        order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
                 b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
        if order is None:
            raise SourceError("tcpdump wrote something that is not a pcap stream")
        self._fraction = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
        self.linktype = struct.unpack_from(order + "I", self._buffer, 20)[0] & 0x0FFFFFFF
        self._record = struct.Struct(order + "IIII")
        del self._buffer[:24]
        return True


# --- a packet socket of our own ----------------------------------------------------------

SOL_PACKET, PACKET_STATISTICS = 263, 6  # linux/if_packet.h: struct tpacket_stats {tp_packets, tp_drops}
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # linux/if_packet.h: a frame this host sent
ARPHRD_LOOPBACK = 772
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = 33
BUFFER_BYTES = 32 << 20
# What the link header is, by the interface's hardware type (linux/if_arp.h -> pcap link type).
LINKTYPE_OF_HARDWARE = {1: 1, 772: 1, 65534: 101, 778: 101, 776: 101, 768: 101, 769: 101, 823: 101, 512: 101}
_TIMESPEC = struct.Struct("qq")


class PacketSocket:
    """A packet socket on one interface (every one with None, as tcpdump -i any), the
    filter in the kernel, the kernel's timestamp on every frame."""

    def __init__(self, iface: str | None, bpf: str) -> None:
        from scapy.arch.linux import attach_filter
        from scapy.error import Scapy_Exception

        self.dropped = 0
        self.ended = False
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            if bpf:
                attach_filter(self.sock, bpf, iface or "lo")  # any: compiled for Ethernet framing, which lo has too
            if iface is not None:
                self.sock.bind((iface, ETH_P_ALL))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BUFFER_BYTES)  # root may pass rmem_max
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
            self.sock.setblocking(False)
        except Scapy_Exception as error:
            self.sock.close()
            raise SourceError(str(error)) from None
        except BaseException:
            self.sock.close()
            raise

    def frames(self, timeout: float) -> Iterator[Frame]:
        if select.select([self.sock], [], [], timeout)[0]:
            yield from self._drain(4096)

    def rest(self) -> Iterator[Frame]:
        yield from self._drain(None)

    def ask_dropped(self) -> None:
        try:
            _, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return  # closed: the last count stays
        self.dropped += drops  # the kernel resets its counters when they are read

    def close(self) -> None:
        self.ask_dropped()
        self.sock.close()

    def _drain(self, limit: int | None) -> Iterator[Frame]:
        """The frames the socket holds now (at most `limit`). A loopback frame is seen
        going out and coming in: only the second counts."""
        taken = 0
        while limit is None or taken < limit:
            try:
                frame, ancillary, _, address = self.sock.recvmsg(SNAPLEN, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # closed under us (a stop)
            taken += 1
            _, _, pkttype, hatype = address[:4]
            if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
                continue
            linktype = LINKTYPE_OF_HARDWARE.get(hatype)
            if linktype is not None:  # else a link this reader cannot decode
                yield _timestamp(ancillary), linktype, frame, len(frame)


def _timestamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds / 1e9)
    return time.time()
