"""The JSON document of spec/cli.md (`--format json`).

Laid out for both scripts and people at any size: one top-level key per line and one
connection or finding per line, each written by the C encoder (an indented dump of a
large capture's document would take longer than reading the capture)."""

from __future__ import annotations

import json

from proxydiag.model import Analysis

_encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def render(analysis: Analysis) -> str:
    return render_document(analysis.to_dict())


def render_document(document: dict) -> str:
    lines = ["{"]
    keys = list(document)
    for index, key in enumerate(keys):
        value = document[key]
        comma = "," if index < len(keys) - 1 else ""
        if isinstance(value, list) and value:
            items = [f"    {_encode(item)}" for item in value]
            lines.append(f"  {_encode(key)}: [\n" + ",\n".join(items) + f"\n  ]{comma}")
        else:
            lines.append(f"  {_encode(key)}: {_encode(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"
