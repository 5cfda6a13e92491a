"""Link, IP and TCP decoding: one fast function from a captured frame to a TCP segment.

This runs once per packet of multi-gigabyte captures, so it is written for speed:
precompiled structs, no objects per packet, the connection key taken as slices of the
frame (source address, destination address, source port, destination port) so that
looking the connection up costs a single dictionary access, and the rest of the TCP
header read only for the few segments that still matter.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW has the values 12 and 14 on some BSDs; pcap files written there keep them.
RAW_IP_LINKTYPES = (LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6)

LINKTYPE_NAMES = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW: "raw IP",
    12: "raw IP",
    14: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked v1",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2",
}

VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)
# BSD loopback address families: AF_INET is 2 everywhere, AF_INET6 differs by OS.
NULL_AF_IPV6 = (10, 24, 28, 30)

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

IPPROTO_TCP = 6
IPV6_EXTENSION_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options

_U16 = struct.Struct("!H")
_TCP = struct.Struct("!I4xB")  # seq, data offset (after the 4 bytes of ports)
_IPV4 = struct.Struct("!BxH2xHxB")  # version/ihl, total length, flags/fragment, protocol
_IPV6 = struct.Struct("!4xHB")  # payload length, next header


def _ipv4(frame: bytes, ip: int):
    if len(frame) < ip + 20:
        return None
    ver_ihl, total_length, fragment, protocol = _IPV4.unpack_from(frame, ip)
    if protocol != IPPROTO_TCP or fragment & 0x3FFF or ver_ihl >> 4 != 4:
        return None
    tcp = ip + (ver_ihl & 0x0F) * 4
    if len(frame) < tcp + 14:
        return None
    return frame[ip + 12 : ip + 20] + frame[tcp : tcp + 4], frame[tcp + 13], tcp, ip + total_length


def _ipv6(frame: bytes, ip: int):
    if len(frame) < ip + 40:
        return None
    payload_length, next_header = _IPV6.unpack_from(frame, ip)
    tcp = ip + 40
    while next_header in IPV6_EXTENSION_HEADERS and len(frame) >= tcp + 8:
        next_header = frame[tcp]
        tcp += (frame[tcp + 1] + 1) * 8
    if next_header != IPPROTO_TCP or len(frame) < tcp + 14:
        return None
    return frame[ip + 8 : ip + 40] + frame[tcp : tcp + 4], frame[tcp + 13], tcp, ip + 40 + payload_length


def tcp_details(frame: bytes, tcp: int, ip_end: int) -> tuple[int, int, int, int]:
    """(seq, payload_start, payload_end, missing) of a located TCP segment: the payload
    ends at the IP length (not the Ethernet padding) or where the capture cut it, and
    `missing` counts the bytes the snap length cut off."""
    seq, data_offset = _TCP.unpack_from(frame, tcp + 4)
    start = tcp + (data_offset >> 4) * 4
    end = len(frame) if ip_end > len(frame) else ip_end
    return seq, start, max(start, end), ip_end - end


def _by_ethertype(frame: bytes, at: int, ip: int):
    ethertype = frame[at : at + 2]
    if ethertype == b"\x08\x00":
        return _ipv4(frame, ip)
    if ethertype == b"\x86\xdd":
        return _ipv6(frame, ip)
    return None


def _ethernet(frame: bytes):
    if frame[12:14] == b"\x08\x00":  # untagged IPv4, most frames: straight there
        return _ipv4(frame, 14)
    at = 12
    while frame[at : at + 2] in _VLAN_TAGS:
        at += 4
    return _by_ethertype(frame, at, at + 2)


def _linux_sll(frame: bytes):
    return _by_ethertype(frame, 14, 16)


def _linux_sll2(frame: bytes):
    return _by_ethertype(frame, 0, 20)


def _raw_ip(frame: bytes, ip: int = 0):
    version = frame[ip] >> 4 if len(frame) > ip else 0
    if version == 4:
        return _ipv4(frame, ip)
    if version == 6:
        return _ipv6(frame, ip)
    return None


def _bsd_loopback(frame: bytes):
    # The address family is in host byte order (NULL) or network order (LOOP): the
    # value sits in one end byte either way.
    if len(frame) < 4:
        return None
    family = frame[0] | frame[3]
    if family == 2:
        return _ipv4(frame, 4)
    if family in NULL_AF_IPV6:
        return _ipv6(frame, 4)
    return None


_VLAN_TAGS = frozenset(tag.to_bytes(2, "big") for tag in VLAN_ETHERTYPES)

LINK_DECODERS = {
    LINKTYPE_ETHERNET: _ethernet,
    LINKTYPE_LINUX_SLL: _linux_sll,
    LINKTYPE_LINUX_SLL2: _linux_sll2,
    LINKTYPE_NULL: _bsd_loopback,
    LINKTYPE_LOOP: _bsd_loopback,
    **{linktype: _raw_ip for linktype in RAW_IP_LINKTYPES},
}


def locate_tcp(linktype: int, frame: bytes):
    """Find the TCP segment in a frame.

    Returns None for anything that is not a first-fragment TCP segment, else
    (key, flags, tcp_offset, ip_end) where `key` is the bytes src_addr + dst_addr +
    src_port + dst_port and `ip_end` is where the IP packet says it ends. The rest of
    the segment is read only when needed (`tcp_details`).
    """
    decoder = LINK_DECODERS.get(linktype)
    return decoder(frame) if decoder else None


def split_key(key: bytes) -> tuple[str, int, str, int]:
    """(src_addr, src_port, dst_addr, dst_port) from a connection key."""
    width = (len(key) - 4) // 2
    src, dst = _address_text(key[:width]), _address_text(key[width : 2 * width])
    return src, _U16.unpack_from(key, 2 * width)[0], dst, _U16.unpack_from(key, 2 * width + 2)[0]


@functools.lru_cache(maxsize=4096)
def _address_text(packed: bytes) -> str:
    """An address as text (the same few addresses are in most keys; ipaddress is slow)."""
    return str(ipaddress.ip_address(packed))


def reverse_key(key: bytes) -> bytes:
    width = (len(key) - 4) // 2
    ports = len(key) - 4
    return key[width : 2 * width] + key[:width] + key[ports + 2 :] + key[ports : ports + 2]
