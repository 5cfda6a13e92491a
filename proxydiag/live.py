"""Live capture with scapy, handed to the same tracker as files: records of
(frame_no, ts, linktype, frame, wire_length)."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    """Frames from an interface until `count` packets, `duration` seconds, or stop()."""

    def __init__(self, iface: str, bpf: str = MAIL_FILTER, count: int = 0, duration: float | None = None,
                 write_path: str | None = None, on_tick: Callable[[], None] | None = None) -> None:
        self.iface, self.bpf, self.count, self.duration = iface, bpf, count, duration
        self.write_path, self.on_tick = write_path, on_tick
        self.info = LiveInfo(path=f"live:{iface}")
        self._queue: queue.Queue = queue.Queue(maxsize=100_000)
        self._sniffer: Any = None  # scapy's AsyncSniffer, once started
        self._writer: Any = None  # scapy's PcapWriter, once a packet is to be kept
        self._stopped = False

    def start(self) -> None:
        from scapy.config import conf
        from scapy.error import Scapy_Exception
        from scapy.interfaces import get_if_list
        from scapy.sendrecv import AsyncSniffer

        if self.iface not in get_if_list() and self.iface != "any":
            raise LiveError(f"no interface {self.iface!r}; choose one of: {', '.join(get_if_list())} (or any)")
        self._layer2num = conf.l2types.layer2num
        try:
            self._sniffer = AsyncSniffer(iface=None if self.iface == "any" else self.iface, filter=self.bpf,
                                         store=False, prn=self._on_packet)
            self._sniffer.start()
            time.sleep(0.2)  # let the socket open, so that an error surfaces here
        except PermissionError:
            raise LiveError("no permission to capture: run as root or give the interpreter CAP_NET_RAW") from None
        except (OSError, Scapy_Exception) as error:
            raise LiveError(f"cannot capture on {self.iface}: {error}") from None
        failure = getattr(self._sniffer, "exception", None)
        if failure is not None:
            raise LiveError(f"cannot capture on {self.iface}: {failure}")

    def stop(self) -> None:
        self._stopped = True
        if self._sniffer is not None and getattr(self._sniffer, "running", False):
            with contextlib.suppress(Exception):  # the sniffer may already have died with its socket
                self._sniffer.stop()
        if self._writer is not None:
            self._writer.close()

    def _on_packet(self, packet) -> None:
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            self.info.damaged = "packets were dropped: the analysis could not keep up with the interface"

    def __iter__(self) -> Iterator[tuple[int, float, int, bytes, int]]:
        started = last_tick = time.monotonic()
        previous: tuple[bytes | None, float] = (None, 0.0)
        while not self._stopped:
            now = time.monotonic()
            if self.duration is not None and now - started >= self.duration:
                break
            if self.on_tick is not None and now - last_tick >= TICK_SECONDS:
                last_tick = now
                self.on_tick()
            try:
                packet = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            frame, ts = bytes(packet), float(packet.time)
            if frame == previous[0] and ts - previous[1] < 0.001:
                continue  # loopback shows each packet twice (outgoing and incoming)
            previous = (frame, ts)
            linktype = self._layer2num.get(type(packet), 1)
            if linktype not in self.info.linktypes:
                self.info.linktypes.append(linktype)
            self._write(packet)
            self.info.packets += 1
            self.info.bytes_read += len(frame)
            yield self.info.packets, ts, linktype, frame, len(frame)
            if self.count and self.info.packets >= self.count:
                break
        self.stop()

    def _write(self, packet) -> None:
        if self.write_path is None:
            return
        if self._writer is None:
            from scapy.utils import PcapWriter

            self._writer = PcapWriter(self.write_path, append=False, sync=True)
        self._writer.write(packet)
