"""One decoded PROXY header as plain text (`proxydiag decode`)."""

from __future__ import annotations

from proxydiag.names import AS_THEY_ARE
from proxydiag.parsers.proxy_protocol import NOT_A_HEADER, ParseResult, ProxyHeader
from proxydiag.parsers.redact import visible


def describe_parse(result: ParseResult) -> list[str]:
    """The header and its violations as lines of text; every value from the bytes with
    its control characters shown as escapes."""
    return [visible(line) for line in _describe_parse(result)]


def _describe_parse(result: ParseResult) -> list[str]:
    lines = []
    if result.header:
        lines.extend(describe_header(result.header))
    elif result.incomplete:
        lines.append(f"PROXY v{result.version} header, incomplete: the data ends before the header does")
    elif result.version:
        lines.append(f"PROXY v{result.version} header, unreadable")
    else:
        lines.append(f"not a PROXY header: {NOT_A_HEADER}")
        return lines
    for violation in result.violations:
        lines.append(f"  violation at byte {violation.offset}: {violation.message(AS_THEY_ARE)} [{violation.rule}]")
    return lines


def describe_header(header: ProxyHeader) -> list[str]:
    lines = [f"PROXY v{header.version} {header.command} {header.family}, {header.length} bytes"]
    if header.src_addr is not None:
        lines.append(f"  source       {_endpoint(header.src_addr, header.src_port)}")
        lines.append(f"  destination  {_endpoint(header.dst_addr, header.dst_port)}")
    for tlv in header.tlvs:
        shown = ": not shown (it reads as a client's credential command)" if tlv.hidden else _tlv_value(tlv.decoded)
        lines.append(f"  TLV 0x{tlv.type:02x} {tlv.name} ({len(tlv.value)} bytes){shown}")
    if header.tlvs_omitted:
        lines.append(f"  ... and {header.tlvs_omitted} more TLVs, counted but not shown")
    if header.ssl:
        ssl = header.ssl
        flags = [name for bit, name in ((1, "SSL"), (2, "CERT_CONN"), (4, "CERT_SESS")) if ssl.client & bit]
        details = ", ".join(
            f"{name}={value}" for name, value in (
                ("version", ssl.version), ("cipher", ssl.cipher), ("cn", ssl.cn), ("sig_alg", ssl.sig_alg),
                ("key_alg", ssl.key_alg), ("group", ssl.group), ("sig_scheme", ssl.sig_scheme),
                ("client_cert", f"{ssl.client_cert_length} bytes" if ssl.client_cert_length is not None else None),
            ) if value
        )
        lines.append(f"  SSL client=0x{ssl.client:02x} ({'|'.join(flags) or 'none'}) verify={ssl.verify} {details}".rstrip())
    return lines


def _tlv_value(decoded: object) -> str:
    if decoded is None or isinstance(decoded, dict) and "client" in decoded:
        return ""
    if isinstance(decoded, dict):
        return ": " + ", ".join(f"{key}={value}" for key, value in decoded.items())
    return f": {decoded}"


def _endpoint(addr: str | None, port: int | None) -> str:
    if addr is None:
        return "-"
    shown = f"[{addr}]" if ":" in addr else addr
    return f"{shown}:{port}" if port is not None else shown
