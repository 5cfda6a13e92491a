"""The JSON document of spec/cli.md (`--format json`).

Laid out for both scripts and people at any size: one top-level key per line and one
connection or finding per line, each written by the C encoder (an indented dump of a
large capture's document would take longer than reading the capture)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from proxydiag.facts.encoded import Encoded
from proxydiag.jsontypes import JsonDict, JsonValue
from proxydiag.report.later import Later

if TYPE_CHECKING:
    from proxydiag.report.model import Report
    from proxydiag.rules.base import Finding

_plain_encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
# The C encoder escapes C0 controls only; DEL, C1 controls (8-bit ESC forms), bidi
# overrides and isolates and the line separators would reach a terminal (`jq -r`, `cat`)
# raw. They can only stand inside strings, where \uXXXX is their JSON spelling.
_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape_unsafe(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def encode(value: JsonValue) -> str:
    """One JSON value, with every character that could steer a terminal escaped."""
    text = _plain_encode(value)
    return _UNSAFE.sub(_escape_unsafe, text) if _UNSAFE.search(text) else text


def dumps(value: JsonValue, indent: int = 2) -> str:
    """An indented JSON value (small documents: `decode`, `rules`), escaped like `encode`."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _UNSAFE.sub(_escape_unsafe, text)


_encode = encode
VALIDATE_ENV = "PROXYDIAG_VALIDATE_JSON"  # report.schema's; read here so that users never import it


def document_of(report: Report) -> JsonDict:
    """The JSON document (schema proxydiag/1) of a typed `Report`, the one way every
    command's is written: its "findings" are the Report's findings, each told (its fix)
    and written by `Finding.to_dict`, with what the document adds to each (sniff's
    listener, the human reports' ladder legs). A document whose findings are not typed
    has them told as they stand."""
    from proxydiag.report.views import told, told_findings

    typed = report.typed()
    if not typed:
        return told(report.document)
    listed = report.document["findings"]
    findings = [finding_dict(finding, item) for finding, item in zip(told_findings(typed), listed, strict=True)]
    return {key: findings if key == "findings" else value for key, value in report.document.items()}


def finding_dict(finding: Finding, listed: JsonDict) -> JsonDict:
    """A finding as the document writes it, with the keys `listed` (its entry) adds."""
    own = finding.to_dict()
    return {**own, **{key: value for key, value in listed.items() if key not in own}}


def render_document(document: JsonDict) -> str:
    return "".join(stream_document(document))


def stream_document(document: JsonDict) -> Iterator[str]:
    """The document as pieces of text; a list may be given as an iterator (of dicts), so
    that a large document is never built whole. With PROXYDIAG_VALIDATE_JSON set (the
    tests), validated against schema.json as it is written."""
    if os.environ.get(VALIDATE_ENV):
        from proxydiag.report.schema import validated_stream

        return validated_stream(document, _stream_document)
    return _stream_document(document)


def checked_line(event: JsonDict) -> str:
    """One jsonl line (sniff's events), validated like documents when asked."""
    if os.environ.get(VALIDATE_ENV):
        from proxydiag.report.schema import validate_line

        validate_line(event)
    return encode(event)


def _stream_document(document: JsonDict) -> Iterator[str]:
    keys = list(document)
    yield "{\n"
    for index, key in enumerate(keys):
        value = document[key]
        if isinstance(value, Later):
            value = value.compute()
        comma = "," if index < len(keys) - 1 else ""
        if isinstance(value, (list, Iterator)):
            yield from _stream_list(key, value, comma)
        else:
            yield f"  {_encode(key)}: {_encode(value)}{comma}\n"
    yield "}\n"


def _stream_list(key: str, items: Iterable[JsonValue | Encoded], comma: str) -> Iterator[str]:
    first = True
    for item in items:
        yield (f"  {_encode(key)}: [\n    " if first else ",\n    ") + (item if isinstance(item, Encoded) else _encode(item))
        first = False
    yield f"  {_encode(key)}: []{comma}\n" if first else f"\n  ]{comma}\n"
