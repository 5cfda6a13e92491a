"""Wireshark's PROXY dissector as the reference: what tshark says about each header."""

from __future__ import annotations

import shutil
import subprocess

FIELDS = (
    "frame.number",
    "proxy.v2.version",
    "proxy.v2.cmd",
    "proxy.v2.addr_family",
    "proxy.v2.protocol",
    "proxy.v1.proto",
    "proxy.src.ipv4",
    "proxy.dst.ipv4",
    "proxy.src.ipv6",
    "proxy.dst.ipv6",
    "proxy.srcport",
    "proxy.dstport",
    "proxy.v2.tlv.ssl.client",
    "proxy.v2.tlv.ssl.verify",
    "proxy.v2.tlv.ssl.version",
)
# tshark 4.0 (Debian 12) does not decode the SSL sub-TLVs: the version is then read
# from the SSL TLV's value as Wireshark delimits it.
TLV_FIELDS = ("proxy.v2.tlv.type", "proxy.v2.tlv.value")

V2_FAMILY_NUMBERS = {
    "UNSPEC": (0, 0),
    "TCP4": (1, 1),
    "UDP4": (1, 2),
    "TCP6": (2, 1),
    "UDP6": (2, 2),
    "UNIX_STREAM": (3, 1),
    "UNIX_DGRAM": (3, 2),
}


def tshark_path() -> str:
    path = shutil.which("tshark")
    if path is None:
        raise RuntimeError("tshark is not installed (Debian package tshark); tests/run.sh installs it")
    return path


def tshark_headers(capture: str) -> dict[int, dict[str, str]]:
    """Frame number -> the PROXY fields tshark decodes in that frame (its first header).

    One tshark run per capture: every field with all its occurrences, of which the
    first is the frame's first header."""
    command = [tshark_path(), "-r", capture, "-o", "tcp.try_heuristic_first:TRUE", "-Y", "proxy", "-T", "fields",
               "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=;"]
    for field in FIELDS + TLV_FIELDS:
        command += ["-e", field]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    headers = {}
    for line in output.splitlines():
        columns = dict(zip(FIELDS + TLV_FIELDS, line.split("\t"), strict=True))
        values = {name: _normalise(columns.get(name, "").split(";")[0]) for name in FIELDS}
        if not values["proxy.v2.tlv.ssl.version"]:
            values["proxy.v2.tlv.ssl.version"] = _ssl_version_from_tlvs(columns)
        headers[int(values["frame.number"])] = values
    return headers


def _ssl_version_from_tlvs(columns: dict[str, str]) -> str:
    types, tlv_values = columns.get(TLV_FIELDS[0], ""), columns.get(TLV_FIELDS[1], "")
    for tlv_type, value in zip(types.split(";"), tlv_values.split(";"), strict=True):
        if tlv_type and int(tlv_type, 0) == 0x20:
            return _version_sub_tlv(bytes.fromhex(value.replace(":", "")))
    return ""


def _version_sub_tlv(ssl_value: bytes) -> str:
    offset = 5  # client (1) and verify (4)
    while offset + 3 <= len(ssl_value):
        sub_type, length = ssl_value[offset], int.from_bytes(ssl_value[offset + 1 : offset + 3], "big")
        if sub_type == 0x21:
            return ssl_value[offset + 3 : offset + 3 + length].decode()
        offset += 3 + length
    return ""


def _normalise(value: str) -> str:
    """tshark shows some integers in hex (BASE_HEX fields): compare numbers as decimal."""
    return str(int(value, 16)) if value.startswith("0x") else value


def our_fields(header) -> dict[str, str]:
    """Our decoded header in tshark's vocabulary, for a field-by-field comparison."""
    fields = dict.fromkeys(FIELDS[1:], "")
    if header.version == 1:
        fields["proxy.v1.proto"] = header.family
    else:
        family, protocol = V2_FAMILY_NUMBERS[header.family]
        fields.update({
            "proxy.v2.version": "2",
            "proxy.v2.cmd": {"LOCAL": "0", "PROXY": "1"}[header.command],
            "proxy.v2.addr_family": str(family),
            "proxy.v2.protocol": str(protocol),
        })
        if header.ssl:
            fields["proxy.v2.tlv.ssl.client"] = str(header.ssl.client)
            fields["proxy.v2.tlv.ssl.verify"] = str(header.ssl.verify)
            fields["proxy.v2.tlv.ssl.version"] = header.ssl.version or ""
    if header.src_addr is not None and not header.family.startswith("UNIX"):
        width = "ipv6" if ":" in header.src_addr else "ipv4"
        fields[f"proxy.src.{width}"] = header.src_addr
        fields[f"proxy.dst.{width}"] = header.dst_addr
        fields["proxy.srcport"] = str(header.src_port)
        fields["proxy.dstport"] = str(header.dst_port)
    return fields
