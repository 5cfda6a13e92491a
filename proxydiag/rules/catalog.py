"""The finding pages (package data under proxydiag/findings/, shown in the source tree
as docs/findings/): the single source of `explain`, of the
one-line summaries of `rules`, and of the fixes printed in reports.

A page starts with `# CODE slug`, then `severity:` and `summary:` lines, then `##`
sections; "Fix on the proxy" has one `###` subsection per proxy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

PROXY_SECTIONS = ("HAProxy", "nginx", "Traefik", "Caddy", "Envoy", "Cloud load balancers")  # on every page
# On the pages where that proxy can cause the finding; a report prints one when the traffic or
# the configuration names that proxy (rules/registry.py `recognise_proxy`).
OTHER_PROXY_SECTIONS = ("Stalwart proxy", "stunnel")
UNRECOGNISED_PROXY_FIXES = ("HAProxy", "nginx")


def essential(section: str, max_prose_lines: int = 6) -> str:
    """A fix as a report shows it: the text up to the end of its first configuration
    block (the page has the rest)."""
    lines = section.strip().splitlines()
    fences = [index for index, line in enumerate(lines) if line.startswith("```")]
    if len(fences) >= 2:
        return "\n".join(lines[: fences[1] + 1])
    prose = section.strip().split("\n\n", 1)[0].splitlines()
    return "\n".join(prose[:max_prose_lines])


def _name_and_floor(proxy: str | None) -> tuple[str | None, tuple[int, ...] | None]:
    """`nginx 1.31.4+` -> ("nginx", (1, 31, 4)); a bare name has no version."""
    match = re.fullmatch(r"(.+?) (\d+(?:\.\d+)*)\+", proxy or "")
    if match is None:
        return proxy, None
    return match.group(1), _version(match.group(2))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _for_version(section: str, floor: tuple[int, ...] | None) -> str:
    """The section's fix for a proxy at least `floor`: its paragraph and configuration block
    declared `>=VERSION` (VERSION <= floor) first; without a version, the first block (the
    one every version takes)."""
    if floor is not None:
        for paragraph in re.split(r"\n\s*\n(?=[^`\s])", section.strip()):
            fence = re.search(r"^```\S*[^\n]*?>=(\d+(?:\.\d+)*)", paragraph, re.M)
            if fence and _version(fence.group(1)) <= floor:
                return essential(paragraph)
    return essential(section)


def _not_applicable(text: str) -> bool:
    return text.lower().startswith("not applicable")


@dataclass(frozen=True)
class Page:
    code: str
    slug: str
    severity: str
    summary: str
    text: str
    sections: dict[str, str] = field(default_factory=dict)
    proxy_fixes: dict[str, str] = field(default_factory=dict)

    def fix_for(self, proxy: str | None) -> str:
        """The fix for the recognised proxy (HAProxy's and nginx's, the usual senders,
        when the bytes do not say which proxy it was), then the Stalwart side. A proxy named
        with its version (`nginx 1.31.4+`) gets the page's fix for that version first."""
        name_given, floor = _name_and_floor(proxy)
        names = [name_given] if name_given in self.proxy_fixes else \
            [name for name in UNRECOGNISED_PROXY_FIXES if name in self.proxy_fixes]
        parts = [f"{name}:\n\n{_for_version(self.proxy_fixes[name], floor)}" for name in names
                 if not _not_applicable(self.proxy_fixes[name])]
        stalwart = self.sections.get("Fix on Stalwart")
        if stalwart and not _not_applicable(stalwart):
            parts.append(f"Stalwart:\n\n{essential(stalwart)}")
        return "\n\n".join(parts)


def parse_page(text: str) -> Page | None:
    match = re.match(r"#\s+(PD\d{3})\s+(\S+)\s*\n", text)
    if not match:
        return None
    severity = re.search(r"^severity:\s*(\w+)", text, re.M)
    summary = re.search(r"^summary:\s*(.+)$", text, re.M)
    sections = _split(text, "## ")
    fixes = _split(sections.get("Fix on the proxy", ""), "### ")
    return Page(
        code=match.group(1),
        slug=match.group(2),
        severity=severity.group(1) if severity else "",
        summary=summary.group(1).strip() if summary else "",
        text=text,
        sections=sections,
        proxy_fixes={name: fixes[name] for name in (*PROXY_SECTIONS, *OTHER_PROXY_SECTIONS) if name in fixes},
    )


def _split(text: str, marker: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(marker):
            if current is not None:
                sections[current] = "\n".join(lines).strip()
            current, lines = line[len(marker) :].strip(), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines).strip()
    return sections


@lru_cache(maxsize=1)
def load_pages() -> dict[str, Page]:
    """Every page shipped with the package, by code (read through importlib.resources, so
    wheels, zip imports, `--user`, `--prefix` and `--target` installs all find them)."""
    pages = {}
    directory = resources.files("proxydiag") / "findings"
    for entry in sorted(directory.iterdir(), key=lambda item: item.name):
        if entry.name.startswith("PD") and entry.name.endswith(".md"):
            page = parse_page(entry.read_text(encoding="utf-8"))
            if page is not None:
                pages[page.code] = page
    return pages


def find_page(code_or_slug: str) -> Page | None:
    wanted = code_or_slug.strip()
    pages = load_pages()
    if wanted.upper() in pages:
        return pages[wanted.upper()]
    return next((page for page in pages.values() if page.slug == wanted.lower()), None)
