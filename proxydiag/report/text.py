"""Plain text for people: a summary, then one block per connection."""

from __future__ import annotations

from proxydiag.model import Analysis, Connection
from proxydiag.proxy_protocol import ParseResult, ProxyHeader


def render(analysis: Analysis) -> str:
    lines = [_summary(analysis), ""]
    lines.extend(_findings(analysis))
    for conn in analysis.connections:
        lines.extend(_connection(conn, several_inputs=len(analysis.inputs) > 1))
        lines.append("")
    return "\n".join(lines)


def _summary(analysis: Analysis) -> str:
    packets = sum(item.packets for item in analysis.inputs)
    with_header = sum(1 for conn in analysis.connections if conn.header)
    return (
        f"{len(analysis.inputs)} input(s), {packets} packets, {len(analysis.connections)} TCP connections, "
        f"{with_header} with a PROXY header"
    )


def _findings(analysis: Analysis) -> list[str]:
    if not analysis.findings:
        return ["No findings.", ""]
    lines = ["Findings:"]
    for finding in analysis.findings:
        cited = ", ".join(f"#{conn_id} (frame {frame})" for conn_id, frame in zip(finding.connections, finding.frames, strict=False))
        lines.append(f"  {finding.severity.upper():7} {finding.code} {finding.slug}")
        lines.append(f"          {finding.message}")
        if cited:
            lines.append(f"          connections: {cited}" + (f" and {finding.count - len(finding.connections)} more" if finding.count > len(finding.connections) else ""))
        lines.append(f"          more: proxydiag explain {finding.code}")
    lines.append("")
    return lines


def _connection(conn: Connection, several_inputs: bool) -> list[str]:
    tcp = conn.tcp
    where = f"input {conn.input + 1}, " if several_inputs else ""
    lines = [
        f"#{conn.id} ({where}frame {conn.first_frame}) {_endpoint(tcp.src_addr, tcp.src_port)} -> "
        f"{_endpoint(tcp.dst_addr, tcp.dst_port)} {conn.protocol or '?'}" + (" [start not captured]" if conn.mid_stream else "")
    ]
    if conn.proxy:
        lines.extend("  " + line for line in describe_parse(conn.proxy))
    for extra in conn.extra_headers:
        lines.extend("  another header: " + line for line in describe_parse(extra)[:1])
    if conn.greeting is not None:
        lines.append(f"  server first: {conn.greeting}")
    if conn.client_first is not None:
        lines.append(f"  client first: {conn.client_first}")
    if conn.closed_by:
        lines.append(f"  closed by the {conn.closed_by} ({conn.close_kind.upper()})")
    return lines


def describe_parse(result: ParseResult) -> list[str]:
    """The header and its violations as lines of text (also used by `decode`)."""
    lines = []
    if result.header:
        lines.extend(describe_header(result.header))
    elif result.incomplete:
        lines.append(f"PROXY v{result.version} header, incomplete: the data ends before the header does")
    elif result.version:
        lines.append(f"PROXY v{result.version} header, unreadable")
    else:
        lines.append("not a PROXY header")
    for violation in result.violations:
        lines.append(f"  violation at byte {violation.offset}: {violation.message} [{violation.rule}]")
    return lines


def describe_header(header: ProxyHeader) -> list[str]:
    lines = [f"PROXY v{header.version} {header.command} {header.family}, {header.length} bytes"]
    if header.src_addr is not None:
        lines.append(f"  source       {_endpoint(header.src_addr, header.src_port)}")
        lines.append(f"  destination  {_endpoint(header.dst_addr, header.dst_port)}")
    for tlv in header.tlvs:
        lines.append(f"  TLV 0x{tlv.type:02x} {tlv.name} ({len(tlv.value)} bytes){_tlv_value(tlv.decoded)}")
    if header.ssl:
        ssl = header.ssl
        flags = [name for bit, name in ((1, "SSL"), (2, "CERT_CONN"), (4, "CERT_SESS")) if ssl.client & bit]
        details = ", ".join(
            f"{name}={value}" for name, value in (("version", ssl.version), ("cipher", ssl.cipher), ("cn", ssl.cn)) if value
        )
        lines.append(f"  SSL client=0x{ssl.client:02x} ({'|'.join(flags) or 'none'}) verify={ssl.verify} {details}".rstrip())
    return lines


def _tlv_value(decoded) -> str:
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
