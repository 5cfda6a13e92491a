"""Small views of the JSON document shared by the human reports (rich, Markdown)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from proxydiag.jsontypes import JsonDict, JsonValue
from proxydiag.parsers.redact import visible

if TYPE_CHECKING:
    from proxydiag.rules.base import Finding

SEVERITY_ORDER = ("error", "warning", "info")
MULTILINE_KEYS = frozenset({"fix"})  # the finding pages' fix text keeps its lines


def visible_document(value: JsonValue, key: str | None = None) -> JsonValue:
    """The document with every control and bidi character in its strings shown as an
    escape: what the human views (rich, Markdown) render. Only a fix keeps its newlines.
    Keys too: counts are keyed by what a log or the wire named (a listener, a reason)."""
    if isinstance(value, str):
        return visible(value, keep_newlines=key in MULTILINE_KEYS)
    if isinstance(value, dict):
        return {visible(name) if isinstance(name, str) else name: visible_document(item, name)
                for name, item in value.items()}
    if isinstance(value, list):
        return [visible_document(item, key) for item in value]
    return value


def endpoint_of(conn: JsonDict) -> str:
    addr, port = conn["tcp"]["dst_addr"], conn["tcp"]["dst_port"]
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def address(addr: str | None, port: int | None) -> str:
    if addr is None:
        return "-"
    shown = f"[{addr}]" if ":" in addr else addr
    return f"{shown}:{port}" if port is not None else shown


def header_label(conn: JsonDict) -> str:
    header = conn["proxy_header"]
    if header is None:
        return "bad" if conn["proxy_header_violations"] else "none"
    label = f"v{header['version']}"
    if header["command"] == "LOCAL":
        return label + " LOCAL"
    if header["ssl"] and header["ssl"]["client_ssl"]:
        label += "+SSL"
    return label + ("!" if conn["proxy_header_violations"] else "")


def tls_label(conn: JsonDict) -> str:
    opening = conn.get("opening") or {}
    if conn["tls"]["client_hello"] or opening.get("tls_from_first_byte"):
        return "TLS"
    if opening.get("upgraded"):
        return "STARTTLS"
    return "-"


def client_label(conn: JsonDict) -> str:
    header = conn["proxy_header"]
    if header and header["src_addr"] is not None and header["command"] == "PROXY":
        return address(header["src_addr"], header["src_port"])
    return address(conn["tcp"]["src_addr"], conn["tcp"]["src_port"])


def outcome_label(conn: JsonDict) -> str:
    if conn["closed_by"] is None:
        return "open"
    return f"{conn['closed_by']} {conn['close'].upper()}"


def software_label(conn: JsonDict) -> str:
    software = (conn.get("opening") or {}).get("software")
    return software["name"] if software else ""


SHOWN_CONNECTIONS = 200  # the most a human report lists (rich; Markdown lists fewer)
MAX_LADDERS = 100  # findings whose conversation a human report keeps to draw (report/ladder.py)


def summarised(document: JsonDict, keep: int | None = SHOWN_CONNECTIONS) -> JsonDict:
    """The document a human report renders: the connections read once, as they come (a
    stream from the store), into one row per server endpoint and the servers recognised,
    keeping only the first `keep` of them (all with None), and beside each finding the
    connections of its first hit's conversation (`ladder_legs`), for its ladder."""
    rows: dict[str, EndpointRow] = {}
    severity_of: dict[int, list[str]] = defaultdict(list)
    for finding in document["findings"]:
        for conn_id in finding["connections"]:
            severity_of[conn_id].append(finding["severity"])
    wanted = {conn_id for finding in document["findings"][:MAX_LADDERS] for conn_id in finding.get("legs") or ()}
    legs: dict[int, JsonDict] = {}
    kept: list[JsonDict] = []
    software: set[str] = set()
    for conn in document["connections"]:
        if conn["id"] in wanted:
            legs[conn["id"]] = conn
        name = endpoint_of(conn)
        row = rows.get(name) or rows.setdefault(name, EndpointRow(name))
        row.add(conn, severity_of.get(conn["id"], ()))
        label = ((conn.get("opening") or {}).get("software") or {}).get("name")
        if label:
            software.add(label)
        if keep is None or len(kept) < keep:
            kept.append(conn)
    ordered = sorted((row.to_dict() for row in rows.values()),
                     key=lambda row: (-int(row["errors"]), -int(row["warnings"]), str(row["endpoint"])))
    findings = [{**finding, "ladder_legs": [legs[conn_id] for conn_id in finding.get("legs") or () if conn_id in legs]}
                for finding in document["findings"]]
    return {**document, "connections": kept, "endpoints": ordered, "servers_recognised": sorted(software),
            "findings": findings}


class EndpointRow:
    """One server endpoint's connections, header versions and the findings citing them."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.connections = 0
        self.protocols: set[str] = set()
        self.headers: set[str] = set()
        self.software = ""
        self.errors = 0
        self.warnings = 0

    def add(self, conn: JsonDict, severities: Iterable[str]) -> None:
        self.connections += 1
        self.protocols.add(conn["protocol"] or "?")
        self.headers.add(header_label(conn))
        self.software = self.software or software_label(conn)
        self.errors += sum(1 for severity in severities if severity == "error")
        self.warnings += sum(1 for severity in severities if severity == "warning")

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "connections": self.connections, "protocols": sorted(self.protocols),
                "headers": sorted(self.headers), "software": self.software, "errors": self.errors,
                "warnings": self.warnings}


def endpoint_verdicts(document: JsonDict) -> list[JsonDict]:
    """One row per server endpoint: its connections, header versions and the worst
    finding that cites any of them."""
    if "endpoints" not in document:
        document = summarised(document, keep=0)
    rows: list[JsonDict] = document["endpoints"]
    return rows


def evidence_lines(finding: Finding, limit: int = 6) -> list[str]:
    lines = []
    for key, value in finding.evidence.items():
        if value in (None, [], {}, ""):
            continue
        text = value if isinstance(value, str) else _compact(value)
        lines.append(f"{key.replace('_', ' ')}: {text}")
    return lines[:limit]


def _compact(value: JsonValue) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items() if v not in (None, [], {}))
    if isinstance(value, list):
        return "; ".join(_compact(item) for item in value[:5]) + (" ..." if len(value) > 5 else "")
    return str(value)


def told(document: JsonDict) -> JsonDict:
    """The document with every finding's fix (`fix_of`)."""
    for finding in document.get("findings") or []:
        if finding.get("fix") is None:
            finding["fix"] = fix_of(finding["code"], finding.get("proxy"), bool(finding.get("note")))
    return document


def told_findings(findings: Iterable[Finding]) -> list[Finding]:
    """The findings, each with its fix (`fix_of`), as `told` gives the document's."""
    return [finding if finding.fix is not None else replace(finding, fix=fix_of(finding.code, finding.proxy, finding.note))
            for finding in findings]


def fix_of(code: str, proxy: str | None, note: bool) -> str:
    """A finding's fix when the rule gave none (an edit of the user's own line): the page's
    section for the recognised proxy (HAProxy's and nginx's, the usual senders, when the
    bytes do not say) and Stalwart's; no fix for a note."""
    from proxydiag.rules import catalog

    page = catalog.load_pages().get(code)
    return "" if note else page.fix_for(proxy) if page else f"See `proxydiag explain {code}`."


def where_line(finding: Finding) -> str:
    """The connections a finding rests on: how many, and the first ones with their frames."""
    pairs = zip(finding.connections, finding.frames, strict=False)
    cited = ", ".join(f"#{cid} (frame {frame})" if frame is not None else f"#{cid}" for cid, frame in pairs)
    extra = finding.count - len(finding.connections)
    count = f"{finding.count} connections: " if finding.count > 1 else ""
    return count + cited + (f" and {extra} more" if extra > 0 else "")


def visible_finding(finding: Finding) -> Finding:
    """The finding as the human views render it: its message, evidence and fix with every
    control and bidi character shown as an escape (`visible_document`)."""
    evidence = visible_document(finding.evidence)
    fix = visible(finding.fix, keep_newlines=True) if finding.fix is not None else None
    assert isinstance(evidence, dict)
    return replace(finding, message=visible(finding.message), evidence=evidence, fix=fix)


def finding_of(item: JsonDict) -> Finding:
    """A document's finding as a `Finding` (no typed `said`: its sentence only), for a
    document that comes without its findings (read back, or made by a test)."""
    from proxydiag.rules.base import Finding

    return Finding(code=item["code"], slug=item["slug"], severity=item["severity"], message=item["message"],
                   connections=list(item.get("connections") or []), frames=list(item.get("first_frames") or []),
                   count=item.get("count", 1), evidence=dict(item.get("evidence") or {}), fix=item.get("fix"),
                   inferred=bool(item.get("inferred")), severity_lowered=item.get("severity_lowered"),
                   doc=item.get("doc", ""), proxy=item.get("proxy"), note=bool(item.get("note")),
                   legs=list(item.get("legs") or []))


def visible_findings(document: JsonDict, findings: Sequence[Finding] | None) -> list[Finding]:
    """The findings a human view renders (`visible_finding`): the typed ones given, else
    the document's read back."""
    typed = findings if findings is not None else [finding_of(item) for item in document.get("findings") or []]
    return [visible_finding(finding) for finding in typed]


def ladder_legs_of(document: JsonDict) -> list[list[JsonDict]]:
    """Each finding's legs, in the document's order, as `summarised` kept them beside it."""
    return [list(item.get("ladder_legs") or []) for item in document.get("findings") or []]
