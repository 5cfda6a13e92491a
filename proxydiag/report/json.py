"""The JSON document of spec/cli.md (`--format json`).

Laid out for both scripts and people at any size: one top-level key per line and one
connection or finding per line, each written by the C encoder (an indented dump of a
large capture's document would take longer than reading the capture)."""

from __future__ import annotations

import json
from collections.abc import Iterator

_encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def render_document(document: dict) -> str:
    return "".join(stream_document(document))


def stream_document(document: dict) -> Iterator[str]:
    """The document as pieces of text; a list may be given as an iterator (of dicts), so
    that a large document is never built whole."""
    keys = list(document)
    yield "{\n"
    for index, key in enumerate(keys):
        value = document[key]
        comma = "," if index < len(keys) - 1 else ""
        if isinstance(value, (list, Iterator)):
            yield from _stream_list(key, value, comma)
        else:
            yield f"  {_encode(key)}: {_encode(value)}{comma}\n"
    yield "}\n"


def _stream_list(key: str, items, comma: str) -> Iterator[str]:
    first = True
    for item in items:
        yield (f"  {_encode(key)}: [\n    " if first else ",\n    ") + _encode(item)
        first = False
    yield f"  {_encode(key)}: []{comma}\n" if first else f"\n  ]{comma}\n"
