"""The one way to make a `Finding`: code, slug, severity and page come from the catalog
(the pages), whatever the evidence; a severity other than the page's only for a reason
the finding reports (`severity_lowered`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxydiag.rules.base import NOTE_REASONS, SEVERITIES, Finding, Lowered, page_of
from proxydiag.rules.said import AS_THEY_ARE, Said


def severity_of(code: str, lowered: Lowered | None = None, escalated: bool = False) -> str:
    """The page's severity, one step lower for a stated reason, one step higher where the
    page itself says when (PD203 on an endpoint that sees nothing else)."""
    index = SEVERITIES.index(page_of(code).severity)
    if lowered is not None:
        index = min(index + 1, len(SEVERITIES) - 1)
    elif escalated:
        index = max(index - 1, 0)
    return SEVERITIES[index]


def make_finding(code: str, message: Said, evidence: dict[str, Any], *, connections: Sequence[int] = (),
                 frames: Sequence[int | None] = (), count: int = 1, lowered: Lowered | None = None,
                 escalated: bool = False, fix: str | None = None, proxy: str | None = None,
                 legs: Sequence[int] = ()) -> Finding:
    page = page_of(code)
    return Finding(
        code=code,
        slug=page.slug,
        severity=severity_of(code, lowered, escalated),
        message=message.message(AS_THEY_ARE),
        connections=list(connections),
        frames=list(frames),
        count=count,
        evidence=evidence,
        fix=fix,
        inferred=lowered == "inferred",
        severity_lowered=lowered,
        doc=f"docs/findings/{code}.md",
        proxy=proxy,
        note=lowered in NOTE_REASONS,
        legs=list(legs),
        said=message,
    )
