"""Link, IP and TCP decoding: one fast function from a captured frame to a TCP segment.

This runs once per packet of multi-gigabyte captures, so it is written for speed:
precompiled structs, no objects per packet, and the connection key taken as one
slice of the frame (source address, destination address, source port, destination
port) so that looking the connection up costs a single dictionary access.
"""

from __future__ import annotations

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
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_NAMES)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
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
_TCP = struct.Struct("!IIBB")  # seq, ack, data offset, flags (after the 4 bytes of ports)
_IPV4 = struct.Struct("!BxH2xHxB")  # version/ihl, total length, flags/fragment, protocol
_IPV6 = struct.Struct("!4xHB")  # payload length, next header


def ip_payload_offset(linktype: int, frame: bytes) -> tuple[int, int] | None:
    """(IP version, offset of the IP header) in the frame, or None when it carries no IP."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        offset = 12
        ethertype = (frame[12] << 8) | frame[13]
        while ethertype in VLAN_ETHERTYPES and len(frame) >= offset + 6:
            offset += 4
            ethertype = (frame[offset] << 8) | frame[offset + 1]
        offset += 2
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        ethertype, offset = (frame[0] << 8) | frame[1], 20
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        ethertype, offset = (frame[14] << 8) | frame[15], 16
    elif linktype in RAW_IP_LINKTYPES:
        if not frame:
            return None
        version = frame[0] >> 4
        return (version, 0) if version in (4, 6) else None
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return None
        family = frame[0] | frame[3]  # host byte order: the value sits in one end byte
        if family == 2:
            return 4, 4
        return (6, 4) if family in NULL_AF_IPV6 else None
    else:
        return None
    if ethertype == ETHERTYPE_IPV4:
        return 4, offset
    if ethertype == ETHERTYPE_IPV6:
        return 6, offset
    return None


def decode_tcp(linktype: int, frame: bytes):
    """Decode a frame down to TCP.

    Returns None for anything that is not a first-fragment TCP segment, else
    (key, seq, ack, flags, payload_start, payload_end, missing) where `key` is the
    bytes src_addr + dst_addr + src_port + dst_port, `payload_end` is bounded by the
    IP length (not the Ethernet padding) and by what was captured, and `missing` is
    how many payload bytes the snap length cut off.
    """
    located = ip_payload_offset(linktype, frame)
    if located is None:
        return None
    version, ip = located
    if version == 4:
        if len(frame) < ip + 20:
            return None
        ver_ihl, total_length, fragment, protocol = _IPV4.unpack_from(frame, ip)
        if protocol != IPPROTO_TCP or fragment & 0x3FFF or ver_ihl >> 4 != 4:
            return None
        tcp = ip + (ver_ihl & 0x0F) * 4
        ip_end = ip + total_length
        addresses = frame[ip + 12 : ip + 20]
    elif version == 6:
        if len(frame) < ip + 40:
            return None
        payload_length, next_header = _IPV6.unpack_from(frame, ip)
        tcp = ip + 40
        ip_end = tcp + payload_length
        while next_header in IPV6_EXTENSION_HEADERS and len(frame) >= tcp + 8:
            next_header = frame[tcp]
            tcp += (frame[tcp + 1] + 1) * 8
        if next_header != IPPROTO_TCP:
            return None
        addresses = frame[ip + 8 : ip + 40]
    else:
        return None
    if len(frame) < tcp + 14:
        return None
    seq, ack, data_offset, flags = _TCP.unpack_from(frame, tcp + 4)
    start = tcp + (data_offset >> 4) * 4
    end = min(ip_end, len(frame))
    missing = ip_end - end if ip_end > end else 0
    return addresses + frame[tcp : tcp + 4], seq, ack, flags, start, max(start, end), missing


def split_key(key: bytes) -> tuple[str, int, str, int]:
    """(src_addr, src_port, dst_addr, dst_port) from a connection key."""
    width = (len(key) - 4) // 2
    src = ipaddress.ip_address(key[:width])
    dst = ipaddress.ip_address(key[width : 2 * width])
    return str(src), _U16.unpack_from(key, 2 * width)[0], str(dst), _U16.unpack_from(key, 2 * width + 2)[0]


def reverse_key(key: bytes) -> bytes:
    width = (len(key) - 4) // 2
    ports = len(key) - 4
    return key[width : 2 * width] + key[:width] + key[ports + 2 :] + key[ports : ports + 2]
