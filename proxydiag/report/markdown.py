"""--format markdown: a self-contained report to paste into a support ticket."""

from __future__ import annotations

from proxydiag.report.views import (
    client_label,
    endpoint_of,
    endpoint_verdicts,
    evidence_lines,
    header_label,
    outcome_label,
    tls_label,
    where_line,
)

MAX_CONNECTIONS = 30


def render(document: dict, version: str, command_line: str) -> str:
    out: list[str] = ["# proxydiag report", ""]
    out += _environment(document, version, command_line)
    out += _verdicts(document)
    out += _findings(document)
    out += _connections(document)
    return "\n".join(out).rstrip() + "\n"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text not in (None, "") else " "


def _environment(document: dict, version: str, command_line: str) -> list[str]:
    summary = document["summary"]
    lines = ["## Environment", ""]
    for item in document["inputs"]:
        if item.get("format") == "log":
            lines.append(f"- log `{item['path']}`: {item['lines']} lines, {item['events']} events "
                         f"({', '.join(f'{k} {v}' for k, v in item['sources'].items()) or 'none'}), "
                         f"{item['foreign']} foreign and {item['malformed']} malformed lines skipped")
            continue
        state = f", damaged: {item['damaged']}" if item.get("damaged") else ""
        state += f", unreadable: {item['error']}" if item.get("error") else ""
        lines.append(f"- capture `{item['path']}`: {item['format'] or '?'}, link types {item['linktypes']}, "
                     f"{item['packets']} packets{state}")
    for config in document.get("proxy_configs") or []:
        lines.append(f"- {config['kind']} configuration `{config['path']}`: {len(config['listeners'])} listeners, "
                     f"{len(config['routes'])} routes")
    software = sorted({(c.get("opening") or {}).get("software", {}).get("name") for c in document["connections"]
                       if (c.get("opening") or {}).get("software")})
    if software:
        lines.append(f"- servers recognised: {', '.join(software)}")
    if document.get("stalwart_config"):
        config = document["stalwart_config"]
        lines.append(f"- Stalwart configuration `{config['path']}` ({config['style']}): "
                     f"{len(config['listeners'])} listeners, trusted networks {config['trusted_networks'] or 'none'}")
    lines.append(f"- {summary['connections']} TCP connections, {summary['with_proxy_header']} with a PROXY header; "
                 f"{summary['errors']} errors, {summary['warnings']} warnings, {summary['infos']} infos")
    if document.get("anonymized"):
        lines.append("- addresses and host names are pseudonyms (`--anonymize`)")
    lines += [f"- proxydiag {version}: `{command_line}`", ""]
    return lines


def _verdicts(document: dict) -> list[str]:
    rows = endpoint_verdicts(document)
    if not rows:
        return []
    lines = ["## Endpoints", "", "| server endpoint | protocol | connections | header | verdict |", "|---|---|---:|---|---|"]
    for row in rows:
        verdict = (f"**{row['errors']} error(s)**" if row["errors"] else
                   f"{row['warnings']} warning(s)" if row["warnings"] else "healthy")
        protocol = "/".join(row["protocols"]) + (f" ({row['software']})" if row["software"] else "")
        lines.append(f"| {_cell(row['endpoint'])} | {_cell(protocol)} | {row['connections']} | "
                     f"{_cell(', '.join(row['headers']))} | {verdict} |")
    return lines + [""]


def _findings(document: dict) -> list[str]:
    findings = document["findings"]
    lines = ["## Findings", ""]
    if not findings:
        return lines + ["No findings: every header and greeting looks as expected.", ""]
    for finding in findings:
        inferred = " (expectation inferred)" if finding["inferred"] else ""
        lines += [f"### {finding['severity'].upper()} {finding['code']} {finding['slug']}{inferred}", "", finding["message"], ""]
        for line in evidence_lines(finding):
            lines.append(f"- {line}")
        if finding["connections"]:
            lines.append(f"- where: {where_line(finding)}")
        lines.append("")
        if finding["fix"] and finding["severity"] != "info":
            lines += ["**Fix**", "", _demote_headings(finding["fix"]), ""]
        lines += [f"More: `proxydiag explain {finding['code']}`", ""]
    return lines


def _demote_headings(text: str) -> str:
    """Fix excerpts come from the pages; their headings must not outrank the report's."""
    return "\n".join(("####" + line.lstrip("#")) if line.startswith("#") else line for line in text.splitlines())


def _connections(document: dict) -> list[str]:
    connections = document["connections"]
    if not connections:
        return []
    lines = ["## Connections", "", "| # | client (per header) | server | protocol | header | TLS | greeting | outcome |",
             "|---:|---|---|---|---|---|---|---|"]
    for conn in connections[:MAX_CONNECTIONS]:
        greeting = (conn["greeting"] or "")[:60]
        lines.append(
            f"| {conn['id']} | {_cell(client_label(conn))} | {_cell(endpoint_of(conn))} | {_cell(conn['protocol'] or '?')} | "
            f"{_cell(header_label(conn))} | {_cell(tls_label(conn))} | {_cell(greeting)} | {_cell(outcome_label(conn))} |"
        )
    if len(connections) > MAX_CONNECTIONS:
        lines += ["", f"{len(connections) - MAX_CONNECTIONS} more connections: run with `--format json` for all."]
    return lines + [""]
