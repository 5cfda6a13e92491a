"""The catalog's pages as `explain` and `rules` show them. Light: neither loads the rules
(the pages and the rules name the same findings, tests/test_catalog.py)."""

from __future__ import annotations

import json
from typing import TextIO


class UnknownFinding(LookupError):
    """No page for that code or slug: one line for the user."""


def explain(code: str, out: TextIO) -> None:
    """The finding's page: rendered Markdown on a terminal, the page's text elsewhere."""
    from proxydiag.rules import catalog

    page = catalog.find_page(code)
    if page is None:
        known = ", ".join(sorted(catalog.load_pages())) or "none installed"
        raise UnknownFinding(f"no finding {code!r}; known codes: {known} (proxydiag rules lists them)")
    if out.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console(file=out, soft_wrap=False).print(Markdown(page.text))
    else:
        out.write(page.text if page.text.endswith("\n") else page.text + "\n")


def listing(as_json: bool) -> str:
    """The catalog: code, slug, severity and one line each (a table, or JSON)."""
    from proxydiag.rules import catalog

    rows = [
        {"code": page.code, "slug": page.slug, "severity": page.severity, "summary": page.summary}
        for _, page in sorted(catalog.load_pages().items())
    ]
    if as_json:
        return json.dumps(rows, indent=2) + "\n"
    return "".join(f"{row['code']}  {row['severity']:<7}  {row['slug']:<34}  {row['summary']}\n" for row in rows)
