"""Pieces every line-based recogniser shares: reading a direction line by line, showing
bytes as text, and keeping credentials out of what is shown."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable, NamedTuple, Protocol, TypeVar

from proxydiag.parsers.protocols.base import Opening
from proxydiag.parsers.protocols.fields import MAX_ITEMS, show
from proxydiag.parsers.redact import MASK, mask_line

REPLY_LIMIT = 300
MAX_LINES = 400  # lines read from one direction: an opening, not a whole session
MAX_BEFORE_COMMANDS = 16
MIN_SCRUBBED_SECRET = 3  # shorter "secrets" would blank out ordinary words

# Verbs whose arguments are credentials, wherever they stand in the first two words
# (`a1 LOGIN ...`, `LOGIN ...`): redact.mask_line misses the untagged forms, POP3's USER
# (a user name is a credential too) and the user name APOP sends before its digest.
_SECRET_VERBS = frozenset({"AUTH", "AUTHENTICATE", "LOGIN", "USER", "PASS", "APOP"})
_SASL_VERBS = frozenset({"AUTH", "AUTHENTICATE"})  # these keep their mechanism
_SASL_MECHANISM = re.compile(r"^[A-Z0-9_-]{1,40}$")
_LITERAL_AT_END = re.compile(rb"\{(\d{1,12})\+?\}$")  # {5} synchronising, {5+} not
_LITERAL = re.compile(rb"\{\d{1,12}\+?\}")


class Parsed(NamedTuple):
    """What a protocol recogniser hands back to `recognise()`."""

    opening: Opening
    secrets: frozenset[str] = frozenset()
    server_texts: tuple[tuple[str, str], ...] = ()  # (where, text) for software.identify
    client_tls_from: int | None = None  # offsets where STARTTLS turned the streams into TLS
    server_tls_from: int | None = None


class Cursor:
    """One direction of a conversation, read a line (or a counted literal) at a time."""

    __slots__ = ("data", "pos", "lines_read")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.lines_read = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data) or self.lines_read >= MAX_LINES

    def line(self) -> bytes | None:
        """The next line without its CRLF or LF; a last line without one counts too."""
        data, pos = self.data, self.pos
        if pos >= len(data) or self.lines_read >= MAX_LINES:  # at_end(), read for every line
            return None
        self.lines_read += 1
        end = data.find(b"\n", pos)
        if end < 0:
            line, self.pos = data[pos:], len(data)
        else:
            line, self.pos = data[pos:end], end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def skip_past_line(self, marker: bytes) -> bool:
        """Move past the next line that is exactly `marker` (CRLF or LF ended); False
        when there is none (the cursor is then at the end)."""
        data, start = self.data, self.pos
        if data.startswith(marker + b"\n", start) or data.startswith(marker + b"\r\n", start):
            self.pos = data.index(b"\n", start) + 1
            return True
        candidates = [
            (found, ending)
            for ending in (b"\r\n", b"\n")
            if (found := data.find(b"\n" + marker + ending, start)) >= 0
        ]
        if not candidates:
            self.pos = len(data)
            return False
        found, ending = min(candidates)
        self.pos = found + 1 + len(marker) + len(ending)
        return True

    def take(self, count: int) -> bytes:
        chunk = self.data[self.pos : self.pos + max(count, 0)]
        self.pos += len(chunk)
        return chunk


class LogicalLine(NamedTuple):
    """An IMAP/ManageSieve line with its `{n}` literals cut out: `text` keeps the line with
    each literal's announcement, `literals` holds the literal contents in order."""

    text: bytes
    literals: tuple[bytes, ...]


def logical_line(cursor: Cursor, stop_before: Callable[[bytes], bool] | None = None) -> LogicalLine | None:
    """The next line with its literals; `stop_before` tells a line that cannot be the
    rest of a literal's line (it is left for the next call)."""
    first = cursor.line()
    if first is None:
        return None
    parts: list[bytes] = [first]
    literals: list[bytes] = []
    while (match := _LITERAL_AT_END.search(parts[-1])) and len(literals) < MAX_ITEMS:
        literals.append(cursor.take(int(match.group(1))))
        before = cursor.pos, cursor.lines_read
        continuation = cursor.line()
        if continuation is None:
            break
        if stop_before is not None and stop_before(continuation):
            cursor.pos, cursor.lines_read = before
            break
        parts.append(continuation)
    return LogicalLine(b"".join(parts), tuple(literals))


def mask_client_line(text: str) -> str:
    """A client line as shown, with every credential it carries replaced by the mask:
    whatever follows a verb that carries one, wherever it stands (after an IMAP literal,
    `{17}`, the next command's bytes join the line)."""
    words = text.replace("}", "} ").split()
    for index, word in enumerate(words):
        if word.upper() not in _SECRET_VERBS:
            continue
        keep = words[: index + 1]
        # a log's text may hold any character: a mechanism is ASCII
        mechanism = words[index + 1].encode("latin-1", "replace") if len(words) > index + 1 else b""
        if word.upper() in _SASL_VERBS and mechanism and sasl_mechanism(mechanism):
            keep.append(words[index + 1])
        return " ".join(keep + ([MASK] if len(words) > len(keep) else []))
    return mask_line(text)


def show_client_line(raw: bytes, known_verbs: frozenset[str]) -> str:
    """A client line for a report. A single unknown word is masked whole: it can only be a
    SASL continuation (base64) that the reply matching lost track of."""
    words = raw.split()
    if len(words) == 1 and words[0].upper().decode("latin-1") not in known_verbs:
        return MASK
    return mask_client_line(show(raw))


def show_logical_line(line: LogicalLine, known_verbs: frozenset[str]) -> str:
    """An IMAP/ManageSieve command for a report. What follows its first literal is more of
    its string arguments (a user name, a password, a message, or the next line's bytes
    that the literal swallowed): masked, whatever the verb."""
    first = _LITERAL.search(line.text) if line.literals else None
    if first is None or not line.text[first.end() :].strip():
        return show_client_line(line.text, known_verbs)
    return show_client_line(line.text[: first.end()], known_verbs) + f" {MASK}"


def verb_of(raw: bytes) -> str:
    words = raw.split(None, 1)
    return words[0].upper().decode("latin-1") if words else ""


def sasl_mechanism(word: bytes) -> str | None:
    """The mechanism name as written, if it looks like one (never a credential)."""
    name = word.strip(b'"').upper().decode("latin-1")
    return name if _SASL_MECHANISM.match(name) else None


def secret_forms(raw: bytes) -> set[str]:
    """Every way a credential could show up in a report: as sent (escaped like any text)
    and, for base64, its decoded parts (SASL PLAIN separates them with NUL, XOAUTH2 with ^A)."""
    raw = raw.strip()
    forms = {show(raw, len(raw))}
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    for part in re.split(rb"[\x00\x01]", decoded):
        if part:
            forms.add(show(part, len(part)))
    return {form for form in forms if len(form) >= MIN_SCRUBBED_SECRET and form != MASK}


def unquote(raw: bytes) -> bytes:
    raw = raw.strip()
    if len(raw) >= 2 and raw[:1] == raw[-1:] == b'"':
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw


def arguments(raw: bytes) -> list[bytes]:
    """Atoms and quoted strings of an IMAP/ManageSieve argument list, quotes removed."""
    return [unquote(match.group(0)) for match in re.finditer(rb'"(?:[^"\\]|\\.)*"|\S+', raw)]


T = TypeVar("T")


def append_capped(items: list[T], item: T) -> None:
    if len(items) < MAX_ITEMS:
        items.append(item)


def begin_command(session, line: bytes, verbs: frozenset[str]) -> tuple[str, str]:
    """A client command's verb and its line as shown (masked), noted on the session:
    the first client line, the list of verbs, and any credential a server may echo."""
    verb = verb_of(line)
    shown = show_client_line(line, verbs)
    if shown == MASK:  # a stray SASL continuation: a server may echo it
        session.secrets |= secret_forms(line)
    if session.opening.client_first_line is None:
        session.opening.client_first_line = shown
    append_capped(session.opening.commands, verb if verb in verbs else "?")
    return verb, shown


def note_reply_before_commands(opening, rendered: str, is_error: bool, limit: int) -> None:
    """A reply to bytes the client's stream does not hold (a PROXY header read as commands)."""
    if len(opening.replies_before_commands) < limit:
        opening.replies_before_commands.append(rendered)
    if is_error:
        opening.note_error(None, rendered)


class Rendered(Protocol):
    def render(self) -> str: ...


ReplyT = TypeVar("ReplyT", bound=Rendered)


def sasl_exchange(session: Any, initial: list[bytes], reply: ReplyT | None,
                  is_challenge: Callable[[ReplyT], bool]) -> ReplyT | None:
    """Follow a SASL exchange after AUTH/AUTHENTICATE: the initial response and every
    continuation line are secrets. Returns the final reply, or None when the server's
    side ran out (then everything the client sent after is hidden)."""
    for word in initial:
        session.secrets |= secret_forms(word)
    while reply is not None and is_challenge(reply):
        answer = session.commands.line()
        if answer is None:
            return None
        session.secrets |= secret_forms(answer)
        reply = session.take_reply()
    if reply is None:
        session.hide_the_rest()
        return None
    session.opening.auth_reply = reply.render()
    return reply
