"""`--annotate OUT.pcapng`: the input frames written back with proxydiag's judgement
inside, for Wireshark.

Every frame a finding cites carries a packet comment (`CODE slug: connection
#3, error: ...`), the first frame of each connection a one-line summary (its header
decoded, its protocol, its verdict). The inputs are read a second time, after judging,
and written frame by frame: what is held is the comments of the cited frames (at most
MAX_CITED_CONNECTIONS connections per finding), the verdict of each connection (a few
bytes each, as the store's own numbers) and one connection at a time for the summaries,
which come in report order, (input, first frame), as the frames do.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from proxydiag import __version__
from proxydiag.capture.sources import CaptureError, Interface, open_capture
from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.redact import visible
from proxydiag.report import pcapng
from proxydiag.report.views import address
from proxydiag.rules.registry import ALL_RULES, RULES_BY_CODE

MAX_COMMENT = 600  # characters of one comment (after escaping): Wireshark's packet list shows one line
MAX_COMMENTS_PER_FRAME = 64  # far more than the findings that can share a frame
SEVERITY_RANK = {"info": 1, "warning": 2, "error": 3}
_SEVERITY_OF_RANK = {rank: name for name, rank in SEVERITY_RANK.items()}
_BIT_OF_CODE = {rule.code: bit for bit, rule in enumerate(ALL_RULES)}
_WORDS = (len(ALL_RULES) + 63) // 64
# Evidence keys that name a frame of the finding's first connection, and what that frame is.
EVIDENCE_FRAMES = {"client_first_frame": "the client's first bytes", "greeting_frame": "the greeting",
                   "frame": "the frame in question"}


class AnnotateError(Exception):
    """The annotated file cannot be written: str(e) is one line."""


class ConnectionVerdicts:
    """Which findings concern each connection (every one, not only the cited) and the
    worst severity among them: a bit per rule and a byte per connection."""

    def __init__(self) -> None:
        self._codes = [array("Q") for _ in range(_WORDS)]
        self._worst = array("B")

    def record(self, code: str, severity: str, number: int) -> None:
        """judging.OnCite: connection `number` is one of finding `code`'s, at `severity`."""
        bit = _BIT_OF_CODE.get(code)
        if bit is None or number < 1:
            return
        if number > len(self._worst):
            grown = number - len(self._worst)
            self._worst.extend(bytes(grown))
            for word in self._codes:
                word.extend(bytes(8 * grown))
        self._codes[bit // 64][number - 1] |= 1 << (bit % 64)
        self._worst[number - 1] = max(self._worst[number - 1], SEVERITY_RANK.get(severity, 0))

    def of(self, number: int) -> tuple[str | None, list[str]]:
        """(worst severity or None, the codes) of connection `number`."""
        if not 1 <= number <= len(self._worst):
            return None, []
        codes = [rule.code for bit, rule in enumerate(ALL_RULES) if self._codes[bit // 64][number - 1] >> (bit % 64) & 1]
        return _SEVERITY_OF_RANK.get(self._worst[number - 1]), codes


def comment_text(text: str) -> str:
    """Wire text made safe for a packet comment: every control and bidi character shown
    as an escape (a comment is one line in Wireshark and in tshark's output), bounded."""
    shown = visible(text)
    return shown if len(shown) <= MAX_COMMENT else shown[: MAX_COMMENT - 3] + "..."


def finding_comment(finding: Any, number: int, what: str | None = None) -> str:
    """`CODE slug: connection #3, error: <message>`; `what` names an evidence frame."""
    where = f"connection #{number}, {finding.severity}" + (f", {what}" if what else "")
    return comment_text(f"{finding.code} {finding.slug}: {where}: {finding.message}")


def finding_frames(finding: Any) -> Iterator[tuple[int, int, str | None]]:
    """(connection number, frame, what the frame is) of every frame a finding cites: each
    cited connection's first frame, and the frames its evidence names (those of its first
    connection, whose hit the evidence is)."""
    for number, frame in zip(finding.connections, finding.frames, strict=True):
        if frame is not None:
            yield number, frame, None
    if finding.connections:
        for key, what in EVIDENCE_FRAMES.items():
            frame = finding.evidence.get(key)
            if isinstance(frame, int) and not isinstance(frame, bool):
                yield finding.connections[0], frame, what


def cited_comments(findings: Iterable[Any], input_of: Callable[[int], int]) -> dict[tuple[int, int], list[str]]:
    """(input, frame) -> the comments of the findings that cite that frame, in report order."""
    comments: dict[tuple[int, int], list[str]] = {}
    for finding in findings:
        for number, frame, what in finding_frames(finding):
            held = comments.setdefault((input_of(number), frame), [])
            text = finding_comment(finding, number, what)
            if text not in held:
                held.append(text)
    return comments


def header_summary(conn: JsonDict) -> str:
    header = conn.get("proxy_header")
    if header is None:
        return "malformed PROXY header" if conn.get("proxy_header_violations") else "no PROXY header"
    shown = f"v{header['version']} header {header['command']}"
    if header["command"] != "LOCAL" or header.get("src_addr"):
        shown += f" {header['family']} {address(header.get('src_addr'), header.get('src_port'))}"
        shown += f" -> {address(header.get('dst_addr'), header.get('dst_port'))}"
    ssl = header.get("ssl")
    if ssl is not None:
        shown += f", SSL TLV client 0x{ssl['client']:02x} verify {ssl['verify']}"
    elif header["version"] == 2:
        shown += ", no SSL TLV"
    broken = len(conn.get("proxy_header_violations") or [])
    return shown + (f" (breaks {broken} rule{'s' if broken > 1 else ''})" if broken else "")


def verdict_summary(severity: str | None, codes: Sequence[str]) -> str:
    if not codes:
        return "verdict: no finding"
    named = ", ".join(f"{code} {RULES_BY_CODE[code].slug}" for code in codes)
    return f"verdict: {severity} ({named})"


def connection_summary(conn: JsonDict, verdicts: ConnectionVerdicts) -> str:
    """One line for a connection's first frame: endpoints, protocol, header, expectation, verdict."""
    tcp = conn["tcp"]
    parts = [f"proxydiag connection #{conn['id']}: {address(tcp['src_addr'], tcp['src_port'])} -> "
             f"{address(tcp['dst_addr'], tcp['dst_port'])}", conn.get("protocol") or "protocol unknown",
             header_summary(conn)]
    expectation = conn.get("expectation")
    if expectation is not None:
        parts.append(f"listener expects {expectation['value']}" + (" (inferred)" if expectation.get("inferred") else ""))
    parts.append(verdict_summary(*verdicts.of(conn["id"])))
    return comment_text("; ".join(parts))


@dataclass
class Written:
    frames: int = 0
    interfaces: int = 0
    comments: int = 0


class _Summaries:
    """The connections in report order, met as the frames pass: the summary of each
    connection whose first frame this is."""

    def __init__(self, connections: Iterator[JsonDict], verdicts: ConnectionVerdicts) -> None:
        self._connections = connections
        self._verdicts = verdicts
        self._next: JsonDict | None = next(connections, None)

    def at(self, source: int, frame: int) -> list[str]:
        found = []
        while self._next is not None and (self._next["input"], self._next["first_frame"]) <= (source, frame):
            if (self._next["input"], self._next["first_frame"]) == (source, frame):
                found.append(connection_summary(self._next, self._verdicts))
            self._next = next(self._connections, None)
        return found


def write_annotated(handle: IO[bytes], paths: Sequence[str], analysis: Any, verdicts: ConnectionVerdicts) -> Written:
    """Every frame of every readable input into `handle` as pcapng, one interface block
    per (input, interface), with the findings' comments and the connections' summaries."""
    inputs: dict[int, int] = {}  # of the cited connections, each read from the store once

    def input_of(number: int) -> int:
        if number not in inputs:
            inputs[number] = analysis.connections[number - 1].input
        return inputs[number]

    cited = cited_comments(analysis.findings, input_of)
    summaries = _Summaries(iter(analysis.connection_dicts()), verdicts)
    written = Written()
    handle.write(pcapng.section_header(f"proxydiag {__version__} --annotate"))
    for source, path in enumerate(paths):
        if source < len(analysis.inputs) and analysis.inputs[source].error:
            continue
        try:
            reader = open_capture(path, exact=True)
        except CaptureError as error:
            raise AnnotateError(f"cannot read {path} again: {error}") from None
        base = written.interfaces
        with reader:
            for frame_no, interface, ticks, _linktype, frame, wire_length in reader:
                while written.interfaces - base <= interface:
                    handle.write(_interface_block(reader.interfaces[written.interfaces - base]))
                    written.interfaces += 1
                comments = bounded([*summaries.at(source, frame_no), *cited.get((source, frame_no), ())])
                handle.write(pcapng.enhanced_packet(base + interface, ticks, frame, wire_length, comments))
                written.frames += 1
                written.comments += len(comments)
    return written


def bounded(comments: list[str]) -> list[str]:
    if len(comments) <= MAX_COMMENTS_PER_FRAME:
        return comments
    more = len(comments) - MAX_COMMENTS_PER_FRAME + 1
    return [*comments[: MAX_COMMENTS_PER_FRAME - 1], f"proxydiag: {more} more comments on this frame (see the report)"]


def _interface_block(interface: Interface) -> bytes:
    return pcapng.interface_description(interface.linktype, interface.snaplen, interface.tsresol, interface.tsoffset,
                                        interface.options)


def target_problem(target: Path, inputs: Sequence[str]) -> str | None:
    """Why `target` cannot take the annotated capture (None: it can): standard input cannot
    be read twice, an input must never be overwritten, a directory is no file."""
    if "-" in inputs:
        return "--annotate reads the captures a second time: give files, not standard input"
    if target.is_dir():
        return f"--annotate {visible(str(target))}: is a directory; give a file name such as annotated.pcapng"
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        return f"--annotate {visible(str(target))}: cannot write in {visible(str(directory))} (no such directory, or no permission)"
    for path in inputs:
        if _same_file(target, Path(path)):
            return f"--annotate {visible(str(target))}: that is an input; write the annotated capture to another file"
    return None


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve() or (one.exists() and other.exists() and os.path.samefile(one, other))
    except OSError:
        return False


def annotate(target: Path, paths: Sequence[str], analysis: Any, verdicts: ConnectionVerdicts) -> Written:
    """Write the annotated capture to a temporary file beside `target`, then rename it
    into place: a symbolic link at `target` is replaced, never followed, and a failure
    leaves no half-written file."""
    directory = target.parent if str(target.parent) else Path(".")
    try:
        handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".proxydiag-annotate-", suffix=".pcapng", delete=False)
    except OSError as error:
        raise AnnotateError(f"cannot write {visible(str(target))}: {error.strerror or error}") from None
    try:
        with handle:
            written = write_annotated(handle, paths, analysis, verdicts)
        os.replace(handle.name, target)
    except OSError as error:
        os.unlink(handle.name)
        raise AnnotateError(f"cannot write {visible(str(target))}: {error.strerror or error}") from None
    except BaseException:
        os.unlink(handle.name)
        raise
    return written
