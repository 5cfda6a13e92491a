"""--annotate, wired: the target checked before anything is read, what judging keeps for
it, and the annotated capture written once the report's findings are known."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from proxydiag.pipeline.outcome import Unusable

if TYPE_CHECKING:
    from proxydiag.facts.model import Analysis
    from proxydiag.report.annotate import ConnectionVerdicts


def verdicts_for(target: Path | None, anonymize: bool, captures: Sequence[str]) -> ConnectionVerdicts | None:
    """--annotate checked before anything is read, and what judging must keep for it."""
    if target is None:
        return None
    from proxydiag.report.annotate import ConnectionVerdicts, target_problem

    if anonymize:
        raise Unusable("--annotate writes the original frames, addresses and all: it cannot be --anonymize'd; "
                       "drop one of them")
    if not captures:
        raise Unusable("--annotate writes the captures back: give at least one capture file")
    problem = target_problem(target, captures)
    if problem is not None:
        raise Unusable(problem)
    return ConnectionVerdicts()


def write(target: Path | None, captures: Sequence[str], analysis: Analysis,
          verdicts: ConnectionVerdicts | None) -> list[str]:
    """The annotated capture written; what went wrong, as lines the report's exit code counts
    (the report is still given)."""
    if target is None or verdicts is None:
        return []
    from proxydiag.report.annotate import AnnotateError, annotate

    try:
        annotate(target, captures, analysis, verdicts)
    except AnnotateError as error:
        return [str(error)]
    return []
