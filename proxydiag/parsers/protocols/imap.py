"""IMAP openings: the untagged greeting and its capabilities, STARTTLS, LOGIN and
AUTHENTICATE (masked, literals included), tagged BAD/NO answers. Tagged responses are
matched to commands by tag."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from proxydiag.parsers.protocols.base import MailOpening
from proxydiag.parsers.protocols.text import (
    MAX_BEFORE_COMMANDS,
    MAX_LINES,
    REPLY_LIMIT,
    Cursor,
    LogicalLine,
    Parsed,
    append_capped,
    arguments,
    logical_line,
    sasl_mechanism,
    secret_forms,
    show,
    show_logical_line,
)
from proxydiag.parsers.protocols.tls import starts_with_tls
from proxydiag.parsers.redact import MASK

IMAP_VERBS = frozenset(
    {
        "CAPABILITY",
        "NOOP",
        "LOGOUT",
        "STARTTLS",
        "AUTHENTICATE",
        "LOGIN",
        "ENABLE",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "DELETE",
        "RENAME",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "LIST",
        "LSUB",
        "NAMESPACE",
        "STATUS",
        "APPEND",
        "IDLE",
        "DONE",
        "CHECK",
        "CLOSE",
        "UNSELECT",
        "EXPUNGE",
        "SEARCH",
        "FETCH",
        "STORE",
        "COPY",
        "MOVE",
        "UID",
        "ID",
        "COMPRESS",
        "GETQUOTA",
        "GETQUOTAROOT",
        "SETQUOTA",
        "GETACL",
        "SETACL",
        "MYRIGHTS",
        "LISTRIGHTS",
        "DELETEACL",
        "SORT",
        "THREAD",
        "UNAUTHENTICATE",
        "GETMETADATA",
        "SETMETADATA",
        "XLIST",
    }
)
GREETING_STATUSES = frozenset({"OK", "PREAUTH", "BYE"})
ERROR_STATUSES = frozenset({"NO", "BAD"})
UNTAGGED, CONTINUATION = b"*", b"+"
MAX_SOFTWARE_RESPONSES = 40

_CAPABILITY_CODE = re.compile(rb"^\[CAPABILITY(?: ([^\]]*))?\]\s*(.*)$", re.I | re.S)
_ALERT_CODE = re.compile(rb"^\[ALERT\]", re.I)
_LITERAL_ANNOUNCEMENT = re.compile(rb"^\{\d+\+?\}$")


@dataclass(slots=True)
class ImapOpening(MailOpening):
    login_disabled: bool = False  # LOGINDISABLED advertised


class Response(NamedTuple):
    tag: bytes  # b"*" untagged, b"+" continuation request, else the command's tag
    status: str  # OK, NO, BAD, BYE, PREAUTH, CAPABILITY, ...
    rest: bytes
    line: bytes
    end: int

    def render(self) -> str:
        return show(self.line, REPLY_LIMIT)


class Command(NamedTuple):
    tag: bytes | None  # None: a line without a space, a SASL continuation or junk
    verb: str
    rest: bytes
    line: bytes
    literals: tuple[bytes, ...]
    end: int


def read_responses(server: bytes) -> list[Response]:
    cursor = Cursor(server)
    found: list[Response] = []
    while len(found) < MAX_LINES and (line := logical_line(cursor)) is not None:
        words = line.text.split(None, 2)
        tag = words[0] if words else b""
        status = words[1].upper().decode("latin-1") if len(words) > 1 else ""
        found.append(Response(tag, status, words[2] if len(words) > 2 else b"", line.text, cursor.pos))
    return found


def read_commands(client: bytes) -> list[Command]:
    cursor = Cursor(client)
    found: list[Command] = []
    while len(found) < MAX_LINES and (line := logical_line(cursor)) is not None:
        words = line.text.split(None, 2)
        if len(words) < 2:
            found.append(Command(None, "", b"", line.text, line.literals, cursor.pos))
            continue
        verb = words[1].upper().decode("latin-1")
        found.append(Command(words[0], verb, words[2] if len(words) > 2 else b"", line.text, line.literals, cursor.pos))
    return found


def capability_list(raw: bytes) -> list[str]:
    """Capability names as the server spelt them (IMAP4rev1); they compare case-blind."""
    found: list[str] = []
    for word in raw.split():
        name = show(word)
        if name not in found:
            append_capped(found, name)
    return found


class _Session:
    def __init__(self, client: bytes, server: bytes) -> None:
        self.opening = ImapOpening(protocol="imap")
        self.client = client
        self.responses = read_responses(server)
        self.commands = read_commands(client)
        self.secrets: set[str] = set()
        self.texts: list[tuple[str, str]] = []
        self.client_tls_from: int | None = None
        self.server_tls_from: int | None = None
        self.greeting_capabilities: list[str] | None = None

    def run(self) -> Parsed:
        self.greet()
        self.cut_at_upgrade()
        tagged = self.tagged_responses()
        self.capabilities()
        self.note_replies_before_commands(tagged)
        self.replay(tagged)
        self.texts.extend(("reply", response.render()) for response in self.responses[:MAX_SOFTWARE_RESPONSES])
        return Parsed(self.opening, frozenset(self.secrets), tuple(self.texts), self.client_tls_from, self.server_tls_from)

    def greet(self) -> None:
        if not self.responses:
            return
        first = self.responses[0]
        if first.tag != UNTAGGED or first.status not in GREETING_STATUSES:
            return
        self.responses = self.responses[1:]
        opening = self.opening
        opening.greeting_code = first.status
        opening.greeting_refused = first.status == "BYE"
        match = _CAPABILITY_CODE.match(first.rest)
        if match:
            self.greeting_capabilities = capability_list(match.group(1) or b"")
        opening.greeting = show(match.group(2) if match else first.rest)
        self.texts.append(("greeting", opening.greeting))

    def cut_at_upgrade(self) -> None:
        """Drop what follows an accepted STARTTLS: it is ciphertext in both directions."""
        for index, command in enumerate(self.commands):
            if command.verb != "STARTTLS":
                continue
            answer = next((r for r in self.responses if r.tag == command.tag), None)
            if answer is not None and answer.status == "OK":
                self.commands = self.commands[: index + 1]
                self.responses = [r for r in self.responses if r.end <= answer.end]
                self.client_tls_from, self.server_tls_from = command.end, answer.end
                return
            if answer is None and starts_with_tls(self.client[command.end :]):
                self.commands = self.commands[: index + 1]
                self.client_tls_from = command.end
                return

    def tagged_responses(self) -> dict[bytes, Response]:
        client_tags = {command.tag for command in self.commands if command.tag is not None}
        tagged: dict[bytes, Response] = {}
        for response in self.responses:
            if response.tag in client_tags and response.tag not in tagged:
                tagged[response.tag] = response
        return tagged

    def capabilities(self) -> None:
        listed = self.greeting_capabilities
        if listed is None:
            untagged = next((r for r in self.responses if r.tag == UNTAGGED and r.status == "CAPABILITY"), None)
            listed = capability_list(untagged.rest) if untagged is not None else None
        if listed is None:
            return
        opening = self.opening
        opening.capabilities = listed
        upper = [name.upper() for name in listed]
        opening.starttls_offered = "STARTTLS" in upper
        opening.login_disabled = "LOGINDISABLED" in upper
        opening.auth_mechanisms = [name[5:] for name in upper if name.startswith("AUTH=")]

    def note_replies_before_commands(self, tagged: dict[bytes, Response]) -> None:
        """Responses ahead of the first answer to a client command that answer none of
        them: tags the client never used (`PROXY BAD ...` for a v1 header), and untagged
        BAD or BYE (an [ALERT] belongs to the command in progress)."""
        answers = set(map(id, tagged.values()))
        logging_out = any(command.verb == "LOGOUT" for command in self.commands)
        for response in self.responses:
            if id(response) in answers:
                break
            if response.tag in (UNTAGGED, CONTINUATION):
                if response.status not in ("BAD", "BYE") or _ALERT_CODE.match(response.rest):
                    continue
                if response.status == "BYE" and logging_out:
                    continue
            if len(self.opening.replies_before_commands) < MAX_BEFORE_COMMANDS:
                self.opening.replies_before_commands.append(response.render())
            if response.status in ERROR_STATUSES:
                self.opening.note_error(None, response.render())

    def replay(self, tagged: dict[bytes, Response]) -> None:
        authenticating = False
        for command in self.commands:
            if command.tag is None and authenticating:
                self.secrets |= secret_forms(command.line)
                continue
            authenticating = command.verb == "AUTHENTICATE"
            shown = self.show(command)
            if shown == MASK:  # a stray SASL continuation: a server may echo it
                self.secrets |= secret_forms(command.line)
            if self.opening.client_first_line is None:
                self.opening.client_first_line = shown
            append_capped(self.opening.commands, command.verb if command.verb in IMAP_VERBS else "?")
            answer = tagged.get(command.tag) if command.tag is not None else None
            self.handle(command, answer)
            if answer is not None and answer.status in ERROR_STATUSES:
                self.opening.note_error(shown, answer.render())

    def show(self, command: Command) -> str:
        tag = show(command.tag or b"")
        if command.verb == "LOGIN":
            return f"{tag} LOGIN {MASK}" if command.rest or command.literals else f"{tag} LOGIN"
        if command.verb == "AUTHENTICATE":
            words = command.rest.split()
            mechanism = sasl_mechanism(words[0]) if words else None
            shown = f"{tag} AUTHENTICATE {mechanism or MASK}" if words else f"{tag} AUTHENTICATE"
            return shown + (f" {MASK}" if len(words) > 1 or command.literals else "")
        return show_logical_line(LogicalLine(command.line, command.literals), IMAP_VERBS)

    def handle(self, command: Command, answer: Response | None) -> None:
        opening = self.opening
        if command.verb == "STARTTLS":
            opening.starttls_requested = True
            opening.starttls_reply = answer.render() if answer is not None else None
            opening.upgraded = answer is not None and answer.status == "OK"
        elif command.verb == "LOGIN":
            opening.auth_method = "LOGIN"
            self.hide_arguments(command)
            opening.auth_reply = answer.render() if answer is not None else None
        elif command.verb == "AUTHENTICATE":
            words = command.rest.split()
            opening.auth_method = sasl_mechanism(words[0]) if words else None
            self.hide_arguments(command, skip=1)
            opening.auth_reply = answer.render() if answer is not None else None

    def hide_arguments(self, command: Command, skip: int = 0) -> None:
        for argument in arguments(command.rest)[skip:]:
            if not _LITERAL_ANNOUNCEMENT.match(argument):
                self.secrets |= secret_forms(argument)
        for literal in command.literals:
            self.secrets |= secret_forms(literal)


def recognise_imap(client: bytes, server: bytes) -> Parsed:
    return _Session(client, server).run()
