"""The JSON document of spec/cli.md (`--format json`)."""

from __future__ import annotations

import json

from proxydiag.model import Analysis


def render(analysis: Analysis) -> str:
    return json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n"
