"""A ladder (report/ladder.py) as a Mermaid sequenceDiagram, which GitHub, GitLab and
Gitea draw where a ticket's Markdown has a ```mermaid block.

Every text is data: each character other than a letter, a digit, a space and `.,_-+()`
becomes Mermaid's entity code (`#35;` for `#`; sequenceDiagram docs, "Entity codes to
escape characters"; mermaid-js/mermaid#193 added them for participants such as
`127.0.0.1:54487`), so a text cannot end a statement (`;`, a newline), start a comment
or directive (`%%`, `%%{init}`), close the code fence (a backtick), add markup (`<`) or
a link; it only ever stands after the `as` of a participant or the `:` of a message or
a note, never at the start of a line, where `click`, `link` and styles would be read.
"""

from __future__ import annotations

import re

from proxydiag.report.ladder import Ladder, Step, time_label

_UNSAFE = re.compile(r"[^A-Za-z0-9 .,_+()-]")
# "end" closes a block in Mermaid's grammar; spelled with an entity it is only a word.
_END = re.compile(r"\bend\b", re.I)
ARROWS = {"syn-ack": "-->>", "reply": "-->>", "rst": "-x", "fin": "-)"}


def escape(text: str) -> str:
    text = _UNSAFE.sub(lambda match: f"#{ord(match.group())};", text)
    return _END.sub(lambda match: f"#{ord(match.group()[0])};{match.group()[1:]}", text)


def sequence_diagram(ladder: Ladder) -> list[str]:
    """The lines of a sequenceDiagram (without the fence)."""
    lines = ["sequenceDiagram"]
    for index, column in enumerate(ladder.columns):
        named = "" if column.captured else " (named by the PROXY header)"
        lines.append(f"    participant P{index} as {escape(f'{column.role} {column.address}{named}')}")
    for step in ladder.steps:
        lines.append(_statement(step))
    return lines


def _statement(step: Step) -> str:
    where = f" (#{step.connection}, frame {step.frame})" if step.frame is not None else ""
    text = " ".join(part for part in (time_label(step.time), step.label + where) if part)
    shown = "<br>".join([escape(text), *(escape(line) for line in step.details)])  # <br>: ours, between escaped texts
    if step.source == step.target:
        return f"    Note over P{step.source}: {shown}"
    return f"    P{step.source}{ARROWS.get(step.kind, '->>')}P{step.target}: {shown}"
