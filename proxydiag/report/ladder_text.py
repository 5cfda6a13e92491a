"""A ladder (report/ladder.py) as lines of text: lifelines side by side, an arrow per
step, and what was sent to the right of them, where a long text cannot cross a lane."""

from __future__ import annotations

from dataclasses import dataclass

from proxydiag.report.ladder import Ladder, Step, time_label

LANE = 9  # characters from one lifeline to the next
TIME_WIDTH = 11


@dataclass(frozen=True)
class Row:
    time: str
    drawing: str
    text: str
    kind: str  # the step's kind, "detail" for a header's fields, "lanes" for the heading


def rows_of(ladder: Ladder) -> list[Row]:
    """The heading (each lane's role), then one row per step and per decoded field."""
    rows = [Row("", _heading(ladder), "", "lanes")]
    for step in ladder.steps:
        where = f" (#{step.connection}, frame {step.frame})" if step.frame is not None else ""
        rows.append(Row(time_label(step.time), _arrow(ladder, step), step.label + where, step.kind))
        rows += [Row("", "".join(_lanes(ladder)), "  " + line, "detail") for line in step.details]
    return rows


def legend(ladder: Ladder) -> list[str]:
    """Who each lane is."""
    lines = []
    for column in ladder.columns:
        note = "" if column.captured else " (named by the PROXY header; its leg is not in the capture)"
        also = f" (connects onwards from {column.also})" if column.also else ""
        lines.append(f"{column.role:7} {column.address}{also}{note}")
    return lines


def _heading(ladder: Ladder) -> str:
    cells = [(column.role if column.captured else f"({column.role})")[: LANE - 1] for column in ladder.columns]
    return "".join(cell.ljust(LANE) for cell in cells).rstrip()


def _lanes(ladder: Ladder) -> list[str]:
    width = (len(ladder.columns) - 1) * LANE + 1
    line = [" "] * width
    for index, column in enumerate(ladder.columns):
        line[index * LANE] = "│" if column.captured else "┆"
    return line


def _arrow(ladder: Ladder, step: Step) -> str:
    line = _lanes(ladder)
    low, high = sorted((step.source, step.target))
    if low == high:
        line[low * LANE] = "●"
        return "".join(line)
    for position in range(low * LANE + 1, high * LANE):
        line[position] = "─"
    if step.target > step.source:
        line[low * LANE], line[high * LANE - 1] = "├", "▶"
    else:
        line[high * LANE], line[low * LANE + 1] = "┤", "◀"
    return "".join(line)
