"""What makes an HTML report (`--format html`) and a Mermaid diagram inert: every element,
attribute and class is one proxydiag's template writes, every attribute value a number
or a constant; every Mermaid statement one of the few shapes report/mermaid.py writes,
its texts made of the characters the escaping lets through."""

from __future__ import annotations

import re
from html.parser import HTMLParser

TAGS = frozenset({
    "html", "head", "meta", "title", "style", "body", "main", "header", "footer", "h1", "h2", "h3", "h4", "ul", "li",
    "p", "span", "table", "thead", "tbody", "tr", "th", "td", "section", "dl", "dt", "dd", "figure", "figcaption",
    "div", "pre", "code", "svg", "line", "polygon", "text",
})
NUMERIC = frozenset({"x", "y", "x1", "y1", "x2", "y2", "width", "height"})
CONSTANT = {
    "lang": {"en"}, "charset": {"utf-8"}, "http-equiv": {"Content-Security-Policy"}, "name": {"referrer", "viewport"},
    "xmlns": {"http://www.w3.org/2000/svg"}, "role": {"img"}, "text-anchor": {"start", "middle", "end"},
}
CLASSES = frozenset({
    "inputs", "counts", "badge", "error", "warning", "info", "ok", "wire", "num", "verdict", "finding", "message",
    "evidence", "where", "inferred", "ladder-scroll", "ladder", "legend", "fix", "more", "lifeline", "ghost", "arrow",
    "head", "role", "lane-address", "time", "tag", "label", "frame", "detail",
    *(f"k-{kind}" for kind in ("syn", "syn-ack", "header", "tls", "client", "greeting", "reply", "fin", "rst", "note")),
})
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_POINTS = re.compile(r"(?:-?\d+(?:\.\d+)?,-?\d+(?:\.\d+)?\s?)+")
_VIEWBOX = re.compile(r"0 0 \d+(?:\.\d+)? \d+(?:\.\d+)?")
_CSP = re.compile(r"default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; base-uri 'none'; form-action 'none'")


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.seen.add(tag)
        if tag not in TAGS:
            self.problems.append(f"element <{tag}>")
        for name, value in attrs:
            problem = _attribute_problem(tag, name, value or "")
            if problem:
                self.problems.append(f"<{tag}> {problem}")

    handle_startendtag = handle_starttag


def _attribute_problem(tag: str, name: str, value: str) -> str | None:
    if name in NUMERIC:
        return None if _NUMBER.fullmatch(value) else f"{name}={value!r}"
    if name == "class":
        unknown = set(value.split()) - CLASSES
        return f"class {sorted(unknown)}" if unknown else None
    if name == "points":
        return None if _POINTS.fullmatch(value.strip()) else f"points={value!r}"
    if name == "viewbox":
        return None if _VIEWBOX.fullmatch(value) else f"viewBox={value!r}"
    if name == "content":
        allowed = _CSP.fullmatch(value) or value in ("no-referrer", "width=device-width, initial-scale=1")
        return None if allowed else f"content={value!r}"
    if name in CONSTANT:
        return None if value in CONSTANT[name] else f"{name}={value!r}"
    return f"attribute {name}={value!r}"


def html_problems(page: str) -> list[str]:
    """Every element or attribute of `page` the template does not write; empty when inert."""
    parser = _Elements()
    parser.feed(page)
    parser.close()
    if "svg" not in parser.seen and "<svg" in page:
        parser.problems.append("an <svg> that is not an element")
    return parser.problems


MERMAID_TEXT = r"(?:[A-Za-z0-9 .,_+()-]|#\d+;)*"  # escaped text: the characters let through and entity codes
_MERMAID_LINE = re.compile(
    rf"    participant P\d+ as {MERMAID_TEXT}"
    rf"|    (?:P\d+(?:->>|-->>|-x|-\))P\d+|Note over P\d+): {MERMAID_TEXT}(?:<br>{MERMAID_TEXT})*"
)
_MERMAID_BLOCK = re.compile(r"^```mermaid\n(.*?)^```$", re.S | re.M)


def mermaid_blocks(markdown: str) -> list[str]:
    return _MERMAID_BLOCK.findall(markdown)


def mermaid_problems(markdown: str) -> list[str]:
    """Every line of a ```mermaid block that is not a statement report/mermaid.py writes."""
    problems = []
    for block in mermaid_blocks(markdown):
        lines = block.splitlines()
        if lines[:1] != ["sequenceDiagram"]:
            problems.append(f"block starts {lines[:1]}")
        problems += [f"statement {line!r}" for line in lines[1:] if not _MERMAID_LINE.fullmatch(line)]
        problems += [f"'end' as a word in {line!r}" for line in lines[1:] if re.search(r"\bend\b", line, re.I)]
    return problems
