"""Capture file readers: classic pcap and pcapng, from files or non-seekable streams.

Both readers work on large chunks read from the stream (never seeking, never
holding more than a chunk plus one record), parse record headers with
precompiled structs and hand out frame bytes as slices of the chunk.  The
per-record loops are deliberately flat: this is the hot path for
multi-gigabyte captures.
"""

from __future__ import annotations

import os
import shlex
import stat
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Generator, Iterator

Record = tuple[int, float, int, bytes, int]
# What an exact reader yields (open_capture(path, exact=True)): frame_no, the interface's
# index among every interface of the input, the timestamp in the interface's own units
# (since its if_tsoffset), linktype, frame bytes, wire length.
ExactRecord = tuple[int, int, int, int, bytes, int]
Unpacker = Callable[[bytes, int], tuple[Any, ...]]

# Chunks this size still sit in the CPU cache after the kernel copied them in;
# measured about 20% faster than 1 MiB chunks on a 200 MB capture.
CHUNK_SIZE = 256 << 10
MAX_CAPLEN = 256 * 1024  # Wireshark's limit; larger means the header is garbage
MAX_BLOCK = 16 << 20  # pcapng blocks beyond this are corrupt; bounds memory use

_COMPRESSED = {
    b"\x1f\x8b": ("gzip", "zcat"),
    b"\x28\xb5\x2f\xfd": ("zstd", "zstdcat"),
    b"\xfd\x37\x7a\x58": ("xz", "xzcat"),
    b"BZh": ("bzip2", "bzcat"),
    b"\x04\x22\x4d\x18": ("lz4", "lz4cat"),
}

# magic as it appears on disk -> (byte order, record header layout, timestamp fraction divisor)
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", "IIII", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", "IIII", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", "IIII", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", "IIII", 1e9),
    # Kuznetsov's modified pcap: ifindex, protocol, pkt_type and padding follow.
    b"\x34\xcd\xb2\xa1": ("<", "IIII8x", 1e6),
    b"\xa1\xb2\xcd\x34": (">", "IIII8x", 1e6),
}
_PCAP_HEADER_SIZE = 24
_PCAP_LINKTYPE_MASK = 0xFFFF  # upper bits carry FCS length info (libpcap LT_LINKTYPE)

_SHB = 0x0A0D0D0A  # a palindrome, so recognisable before the byte order is known
_IDB = 1
_PB = 2
_SPB = 3
_EPB = 6
# Records Wireshark numbers as frames although they hold no packet: custom,
# systemd journal and sysdig event blocks.  They advance frame_no unyielded.
_NUMBERED_NON_PACKETS = frozenset({0xBAD, 0x40000BAD, 9, 0x204, 0x216, 0x221})
_PCAPNG_MAGIC = struct.pack("<I", _SHB)
_BLOCK_HEAD_SIZE = 12  # type, length, and the trailing length copy
_MIN_BLOCK_LENGTH = {_SHB: 28, _IDB: 20, _PB: 32, _SPB: 16, _EPB: 32}
_OPT_END, _OPT_TSRESOL, _OPT_TSOFFSET = 0, 9, 14
# IDB options whose values read the same in either byte order (pcapng spec, section 4.2):
# if_name, if_description, if_IPv4addr, if_IPv6addr, if_MACaddr, if_EUIaddr, if_filter,
# if_os, if_fcslen, if_hardware.
_PORTABLE_IDB_OPTIONS = frozenset({2, 3, 4, 5, 6, 7, 11, 12, 13, 15})


@dataclass(frozen=True)
class _PcapngLayout:
    """Precompiled unpackers for one section byte order."""

    block_head: Unpacker  # type, total length
    u32: Unpacker
    epb: Unpacker  # interface id, ts high, ts low, caplen, origlen
    pb: Unpacker  # interface id, drops, ts high, ts low, caplen, origlen
    idb: Unpacker  # linktype, reserved, snaplen
    option_head: Unpacker  # code, length
    i64: Unpacker


def _layout(order: str) -> _PcapngLayout:
    def unpacker(fmt: str) -> Unpacker:
        return struct.Struct(order + fmt).unpack_from

    return _PcapngLayout(
        unpacker("II"), unpacker("I"), unpacker("IIIII"), unpacker("HHIIII"),
        unpacker("HHI"), unpacker("HH"), unpacker("q"),
    )


_LAYOUT_BY_BOM = {b"\x4d\x3c\x2b\x1a": _layout("<"), b"\x1a\x2b\x3c\x4d": _layout(">")}


@dataclass(frozen=True)
class Interface:
    """An interface of an input as an exact reader describes it: enough to write its
    packets back with their timestamps and link type unchanged."""

    linktype: int
    snaplen: int
    tsresol: int  # the if_tsresol byte: 6 is microseconds, 9 nanoseconds, 0x80|n is 2**-n
    tsoffset: int  # seconds added to every timestamp (if_tsoffset)
    options: tuple[tuple[int, bytes], ...] = ()  # name, description, filter...: see _PORTABLE_IDB_OPTIONS


class CaptureError(Exception):
    """The input cannot be read at all; str(e) is one line saying what and how to fix it."""


@dataclass
class InputInfo:
    path: str  # as given ("-" for stdin)
    format: str  # "pcap" or "pcapng"
    linktypes: list[int] = field(default_factory=list)  # distinct, in order of first appearance (pcapng: of IDBs read)
    packets: int = 0  # records yielded so far
    bytes_read: int = 0  # bytes consumed from the input so far
    size: int | None = None  # total size for regular files
    damaged: str | None = None  # first problem found; records before it were all yielded


def _display_name(path: str) -> str:
    if path == "-":
        return "stdin"
    return path if path.isprintable() else ascii(path)


def open_capture(path: str, exact: bool = False) -> CaptureReader:
    """Open a pcap/pcapng file ("-" for standard input); raises CaptureError if unreadable.
    With `exact`, the reader yields ExactRecords and lists the input's interfaces."""
    if path == "-":
        return CaptureReader(sys.stdin.buffer, path, exact=exact)
    name = _display_name(path)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - the reader owns it and closes it
    except FileNotFoundError:
        raise CaptureError(f"{name}: no such file; check the path") from None
    except IsADirectoryError:
        raise CaptureError(f"{name}: is a directory; give a capture file, not a directory") from None
    except PermissionError:
        raise CaptureError(
            f"{name}: permission denied; make the file readable (chmod o+r) or run with sufficient rights"
        ) from None
    except OSError as e:
        raise CaptureError(f"{name}: cannot open ({e.strerror or e})") from None
    try:
        return CaptureReader(stream, path, owns_stream=True, exact=exact)
    except BaseException:
        stream.close()
        raise


def read_records(stream: BinaryIO, path: str) -> CaptureReader:
    """Read a capture from an already-open binary stream (left open by close()); only ever reads forward."""
    return CaptureReader(stream, path)


def _regular_file_size(stream: BinaryIO) -> int | None:
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _unrecognised_magic(name: str, start: bytes) -> CaptureError:
    for magic, (kind, cat) in _COMPRESSED.items():
        if start.startswith(magic):
            shown = "FILE" if name == "stdin" else shlex.quote(name)
            return CaptureError(
                f"{name}: {kind}-compressed; decompress it first ({cat} {shown} | proxydiag analyze -)"
            )
    hint = "give a file written by tcpdump -w or dumpcap"
    if start.isascii() and start.decode("ascii").isprintable():
        hint = "this looks like text (printed tcpdump output?); " + hint
    return CaptureError(f"{name}: not a pcap or pcapng file (starts with {start.hex(' ')}); {hint}")


class CaptureReader:
    """Iterate (frame_no, timestamp, linktype, frame_bytes, wire_length) over one capture.

    frame_no counts records from 1 exactly like Wireshark's frame numbers, so it
    also advances over the non-packet records Wireshark shows as frames (see
    _NUMBERED_NON_PACKETS); info.packets counts only the records yielded.  A
    pcapng Simple Packet Block has no timestamp and gets the previous packet's.
    The stream is closed by close() only if open_capture opened it.

    With `exact`, it yields ExactRecords instead, and `interfaces` lists every
    interface met so far (one for a pcap file), in the order the records index them.
    """

    def __init__(self, stream: BinaryIO, path: str, owns_stream: bool = False, exact: bool = False):
        self._stream = stream
        self._owns_stream = owns_stream
        self._name = _display_name(path)
        self._read = getattr(stream, "read1", None) or stream.read
        self.info = info = InputInfo(path=path, format="", size=_regular_file_size(stream))
        self.exact = exact
        self.interfaces: list[Interface] = []
        magic = self._read_header(4)
        if not magic:
            raise CaptureError(f"{self._name}: empty file; the capture contains nothing")
        if magic in _PCAP_MAGICS:
            info.format = "pcap"
            self._records = self._start_pcap(magic)
        elif magic == _PCAPNG_MAGIC:
            info.format = "pcapng"
            self._records = self._start_pcapng(magic)
        else:
            raise _unrecognised_magic(self._name, magic)

    def __iter__(self) -> Generator[Any, None, None]:  # Record, or ExactRecord when exact
        return self._records

    def close(self) -> None:
        self._records.close()
        if self._owns_stream:
            self._stream.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- reading -----------------------------------------------------------

    def _read_header(self, n: int) -> bytes:
        """Read exactly n bytes (fewer only at end of input) while opening."""
        parts, have = [], 0
        try:
            while have < n:
                part = self._stream.read(n - have)
                if not part:
                    break
                parts.append(part)
                have += len(part)
        except OSError as e:
            raise CaptureError(f"{self._name}: cannot read ({e.strerror or e})") from None
        header = b"".join(parts)
        self.info.bytes_read += len(header)
        return header

    def _more(self, rest: bytes, need: int) -> bytes | None:
        """rest plus at least one more chunk, reading on until `need` bytes are held; None at end of input."""
        parts, have = [rest], len(rest)
        read, info = self._read, self.info
        try:
            while have < need or len(parts) == 1:
                chunk = read(CHUNK_SIZE)
                if not chunk:
                    break
                parts.append(chunk)
                have += len(chunk)
                info.bytes_read += len(chunk)
        except OSError as e:
            self._damage(f"read error after {info.packets} packets ({e.strerror or e})")
        return b"".join(parts) if len(parts) > 1 else None

    def _damage(self, problem: str) -> None:
        if self.info.damaged is None:
            self.info.damaged = f"{self._name}: {problem}"

    def _offset(self, unread: int) -> int:
        return self.info.bytes_read - unread

    # -- pcap --------------------------------------------------------------

    def _start_pcap(self, magic: bytes) -> Generator[Record, None, None]:
        order, record_layout, divisor = _PCAP_MAGICS[magic]
        rest = self._read_header(_PCAP_HEADER_SIZE - 4)
        if len(rest) < _PCAP_HEADER_SIZE - 4:
            raise CaptureError(
                f"{self._name}: file ends inside the pcap file header; the capture is empty or cut off"
            )
        snaplen, linktype = struct.unpack_from(order + "II", rest, 12)
        linktype &= _PCAP_LINKTYPE_MASK
        self.info.linktypes.append(linktype)
        self.interfaces.append(Interface(linktype, snaplen, 9 if divisor == 1e9 else 6, 0))
        return self._pcap_records(struct.Struct(order + record_layout), divisor, linktype)

    def _pcap_records(self, record_header: struct.Struct, divisor: float, linktype: int) -> Generator[Any, None, None]:
        info = self.info
        more = self._more
        unpack = record_header.unpack_from
        header_size = record_header.size
        max_caplen = MAX_CAPLEN
        exact, units = self.exact, int(divisor)
        frame_no = 0
        buf, pos, end, need = b"", 0, 0, header_size
        while True:
            chunk = more(buf[pos:], need)
            if chunk is None:
                break
            buf = chunk
            pos, end, need = 0, len(buf), header_size
            while pos + header_size <= end:
                sec, frac, caplen, wire_length = unpack(buf, pos)
                if caplen > max_caplen:
                    self._damage(
                        f"packet {frame_no + 1} at byte {self._offset(end - pos)} claims {caplen} captured bytes "
                        f"(limit {max_caplen}); the file is corrupt from there on"
                    )
                    return
                start = pos + header_size
                stop = start + caplen
                if stop > end:
                    need = stop - pos
                    break
                frame_no += 1
                info.packets = frame_no
                if exact:
                    yield frame_no, 0, sec * units + frac, linktype, buf[start:stop], wire_length
                else:
                    yield frame_no, sec + frac / divisor, linktype, buf[start:stop], wire_length
                pos = stop
        if pos < end:
            where = "record header" if end - pos < header_size else "packet data"
            self._damage(
                f"file ends in the middle of the {where} of packet {frame_no + 1} (byte {self._offset(end - pos)}); "
                "the capture was cut off, everything before it was read"
            )

    # -- pcapng ------------------------------------------------------------

    def _start_pcapng(self, magic: bytes) -> Generator[Record, None, None]:
        head = magic + self._read_header(8)
        if len(head) < _BLOCK_HEAD_SIZE:
            raise CaptureError(
                f"{self._name}: file ends inside the pcapng section header; the capture is empty or cut off"
            )
        if head[8:12] not in _LAYOUT_BY_BOM:
            raise CaptureError(
                f"{self._name}: pcapng section header has a bad byte-order magic ({head[8:12].hex(' ')}); "
                "the file is corrupt"
            )
        return self._pcapng_records(head)

    def _pcapng_records(self, buf: bytes) -> Generator[Any, None, None]:
        info = self.info
        more = self._more
        linktypes = info.linktypes
        known_linktypes = set(linktypes)  # a file may hold 65,000 interfaces: no list search per IDB
        layout = _LAYOUT_BY_BOM[buf[8:12]]
        block_head, u32, epb, pb = layout.block_head, layout.u32, layout.epb, layout.pb
        max_caplen = MAX_CAPLEN
        min_length = _MIN_BLOCK_LENGTH.get
        # per interface: (linktype, snaplen, timestamp units per second, offset seconds)
        interfaces: list[tuple[int, int, float, int]] = []
        exact, every_interface = self.exact, self.interfaces
        section_base = 0  # exact: where this section's interfaces start among every_interface
        frame_no = 0
        unyielded = 0  # frame numbers taken by records that are not packets
        last_ts = 0.0
        last_ticks = 0
        pos, end, need = 0, len(buf), _BLOCK_HEAD_SIZE
        while True:
            while end - pos >= _BLOCK_HEAD_SIZE:
                block_type, length = block_head(buf, pos)
                if block_type == _SHB:
                    found = _LAYOUT_BY_BOM.get(buf[pos + 8:pos + 12])
                    if found is None:
                        self._damage(f"section header at byte {self._offset(end - pos)} has a bad byte-order magic")
                        return
                    layout = found
                    block_head, u32, epb, pb = layout.block_head, layout.u32, layout.epb, layout.pb
                    block_type, length = block_head(buf, pos)
                stop = pos + length
                if length < _BLOCK_HEAD_SIZE or length & 3 or length > MAX_BLOCK:
                    self._damage(
                        f"invalid block length {length} at byte {self._offset(end - pos)}; "
                        "the file is corrupt from there on"
                    )
                    return
                if stop > end:
                    need = length
                    break
                if u32(buf, stop - 4)[0] != length:
                    self._damage(
                        f"block at byte {self._offset(end - pos)} has mismatched length fields; "
                        "the file is corrupt from there on"
                    )
                    return
                if length < min_length(block_type, 0):
                    self._damage(f"block of type {block_type} at byte {self._offset(end - pos)} is too short; skipped")
                elif block_type in (_EPB, _PB):
                    if block_type == _EPB:
                        interface, ts_high, ts_low, caplen, wire_length = epb(buf, pos + 8)
                    else:
                        interface, _, ts_high, ts_low, caplen, wire_length = pb(buf, pos + 8)
                    start = pos + 28
                    if interface >= len(interfaces) or caplen > max_caplen or start + caplen > stop - 4:
                        self._damage(_bad_packet_block(self._offset(end - pos), interface, len(interfaces), caplen))
                    elif exact:
                        last_ticks = (ts_high << 32) | ts_low
                        frame_no += 1
                        info.packets = frame_no - unyielded
                        yield (frame_no, section_base + interface, last_ticks, interfaces[interface][0],
                               buf[start:start + caplen], wire_length)
                    else:
                        linktype, _, units, ts_offset = interfaces[interface]
                        last_ts = ((ts_high << 32) | ts_low) / units + ts_offset
                        frame_no += 1
                        info.packets = frame_no - unyielded
                        yield frame_no, last_ts, linktype, buf[start:start + caplen], wire_length
                elif block_type == _SPB:
                    if not interfaces:
                        self._damage(_bad_packet_block(self._offset(end - pos), 0, 0, 0))
                    else:
                        linktype, snaplen, _, _ = interfaces[0]
                        (wire_length,) = u32(buf, pos + 8)
                        caplen = min(wire_length, length - 16, snaplen or MAX_BLOCK)
                        frame_no += 1
                        info.packets = frame_no - unyielded
                        # an SPB has no timestamp; repeating the previous one keeps time monotonic
                        if exact:
                            yield frame_no, section_base, last_ticks, linktype, buf[pos + 12:pos + 12 + caplen], wire_length
                        else:
                            yield frame_no, last_ts, linktype, buf[pos + 12:pos + 12 + caplen], wire_length
                elif block_type == _IDB:
                    interfaces.append(_interface(layout, buf, pos, stop))
                    if interfaces[-1][0] not in known_linktypes:
                        known_linktypes.add(interfaces[-1][0])
                        linktypes.append(interfaces[-1][0])
                    if exact:
                        every_interface.append(_exact_interface(layout, buf, pos, stop))
                elif block_type == _SHB:
                    interfaces = []
                    section_base = len(every_interface)
                elif block_type in _NUMBERED_NON_PACKETS:
                    frame_no += 1
                    unyielded += 1
                pos = stop
            chunk = more(buf[pos:], need)
            if chunk is None:
                break
            buf = chunk
            pos, end, need = 0, len(buf), _BLOCK_HEAD_SIZE
        if pos < end:
            self._damage(
                f"file ends in the middle of a block (byte {self._offset(end - pos)}, after frame {frame_no}); "
                "the capture was cut off, everything before it was read"
            )


def _bad_packet_block(offset: int, interface: int, known: int, caplen: int) -> str:
    where = f"packet block at byte {offset}"
    if interface >= known:
        return f"{where} names interface {interface} but the section describes only {known}; skipped"
    if caplen > MAX_CAPLEN:
        return f"{where} claims {caplen} captured bytes (limit {MAX_CAPLEN}); skipped"
    return f"{where} claims {caplen} captured bytes, more than the block holds; skipped"


def _interface(layout: _PcapngLayout, buf: bytes, pos: int, stop: int) -> tuple[int, int, float, int]:
    """(linktype, snaplen, timestamp units per second, offset seconds) from an IDB."""
    linktype, _, snaplen = layout.idb(buf, pos + 8)
    units, ts_offset = 1e6, 0
    for code, value, length in _options(layout, buf, pos + 16, stop - 4):
        if code == _OPT_TSRESOL and length >= 1:
            exponent = buf[value] & 0x7F
            units = float(2**exponent if buf[value] & 0x80 else 10**exponent)
        elif code == _OPT_TSOFFSET and length >= 8:
            (ts_offset,) = layout.i64(buf, value)
    return linktype, snaplen, units, ts_offset


def _exact_interface(layout: _PcapngLayout, buf: bytes, pos: int, stop: int) -> Interface:
    """An IDB as it must be written back: its resolution byte, offset and portable options."""
    linktype, _, snaplen = layout.idb(buf, pos + 8)
    tsresol, ts_offset, kept = 6, 0, []
    for code, value, length in _options(layout, buf, pos + 16, stop - 4):
        if code == _OPT_TSRESOL and length >= 1:
            tsresol = buf[value]
        elif code == _OPT_TSOFFSET and length >= 8:
            (ts_offset,) = layout.i64(buf, value)
        elif code in _PORTABLE_IDB_OPTIONS:
            kept.append((code, bytes(buf[value:value + length])))
    return Interface(linktype, snaplen, tsresol, ts_offset, tuple(kept))


def _options(layout: _PcapngLayout, buf: bytes, option: int, options_end: int) -> Iterator[tuple[int, int, int]]:
    """(code, where its value starts, its length) of each option of a block, up to opt_endofopt."""
    while option + 4 <= options_end:
        code, length = layout.option_head(buf, option)
        value = option + 4
        if code == _OPT_END or value + length > options_end:
            return
        yield code, value, length
        option = value + ((length + 3) & ~3)
