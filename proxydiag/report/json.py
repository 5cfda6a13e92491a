"""The JSON document of spec/cli.md (`--format json`)."""

from __future__ import annotations

import json

from proxydiag.model import Analysis


def render(analysis: Analysis) -> str:
    return render_document(analysis.to_dict())


def render_document(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
