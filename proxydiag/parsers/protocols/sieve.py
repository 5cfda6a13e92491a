"""ManageSieve openings (RFC 5804): the capability greeting ending in OK, STARTTLS,
AUTHENTICATE (masked: the initial response is a quoted or literal string after the
mechanism, and so is every answer to a server challenge), NO/BYE answers. Every response
ends with an OK, NO or BYE line; the lines before it are capabilities or SASL challenges."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
    unquote,
    verb_of,
)
from proxydiag.parsers.protocols.tls import starts_with_tls
from proxydiag.parsers.redact import MASK

SIEVE_VERBS = frozenset(
    {
        "AUTHENTICATE",
        "STARTTLS",
        "LOGOUT",
        "CAPABILITY",
        "HAVESPACE",
        "PUTSCRIPT",
        "LISTSCRIPTS",
        "SETACTIVE",
        "GETSCRIPT",
        "DELETESCRIPT",
        "RENAMESCRIPT",
        "CHECKSCRIPT",
        "NOOP",
        "UNAUTHENTICATE",
    }
)
REFUSALS = frozenset({"NO", "BYE"})
MAX_SOFTWARE_LINES = 40

_FINAL = re.compile(rb"^(OK|NO|BYE)(?=[\s(]|$)\s*(?:\([^)]*\)\s*)?(.*)$", re.I | re.S)


@dataclass(slots=True)
class SieveOpening(MailOpening):
    implementation: str | None = None  # the IMPLEMENTATION capability


@dataclass(slots=True)
class Response:
    lines: list[LogicalLine] = field(default_factory=list)  # capabilities or challenges
    status: str | None = None  # OK, NO, BYE; None: the response never ended
    text: bytes = b""  # the status line's text, unquoted
    final_line: bytes = b""
    end: int = 0

    def render(self) -> str:
        return show(self.final_line, REPLY_LIMIT) if self.status else ""


def is_final(line: bytes) -> bool:
    return _FINAL.match(line) is not None


def read_responses(server: bytes) -> list[Response]:
    cursor, current = Cursor(server), Response()
    found: list[Response] = []
    # Stalwart sends an empty challenge as a bare `{0}` line: never let a status line be
    # read as the rest of a literal's line.
    while len(found) < MAX_LINES and (line := logical_line(cursor, stop_before=is_final)) is not None:
        match = _FINAL.match(line.text)
        if match is None:
            current.lines.append(line)
            continue
        current.status = match.group(1).upper().decode()
        current.text, current.final_line, current.end = unquote(match.group(2)), line.text, cursor.pos
        found.append(current)
        current = Response()
    if current.lines:
        current.end = cursor.pos
        found.append(current)
    return found


def capability_entries(lines: list[LogicalLine]) -> list[tuple[str, bytes]]:
    """("SASL", b"PLAIN LOGIN") pairs; a literal value stands in for its announcement."""
    entries = []
    for line in lines:
        words = arguments(line.text)
        if not words:
            continue
        value = line.literals[0] if line.literals else (words[1] if len(words) > 1 else b"")
        entries.append((show(words[0].upper()), value))
    return entries


class _Session:
    def __init__(self, client: bytes, server: bytes) -> None:
        self.opening = SieveOpening(protocol="managesieve")
        self.client = client
        self.commands = Cursor(client)
        self.responses = read_responses(server)
        self.next_response = 0
        self.secrets: set[str] = set()
        self.texts: list[tuple[str, str]] = []
        self.client_tls_from: int | None = None
        self.server_tls_from: int | None = None
        self.stopped = False

    def run(self) -> Parsed:
        if self.responses:
            first = self.take_response()
            if first is not None:
                self.greet(first)
            self.skip_responses_before_commands()
        while not self.stopped and (line := logical_line(self.commands)) is not None:
            self.command(line)
        return Parsed(self.opening, frozenset(self.secrets), tuple(self.texts), self.client_tls_from, self.server_tls_from)

    def take_response(self) -> Response | None:
        if self.next_response >= len(self.responses):
            return None
        response = self.responses[self.next_response]
        self.next_response += 1
        for line in response.lines[:MAX_SOFTWARE_LINES]:
            self.texts.append(("capability list", show(line.text)))
        if response.status:
            self.texts.append(("reply", response.render()))
        return response

    def greet(self, response: Response) -> None:
        opening = self.opening
        self.apply_capabilities(response)
        if response.status is None:
            return
        opening.greeting_code = response.status
        opening.greeting = show(response.text)
        opening.greeting_refused = response.status in REFUSALS
        self.texts.insert(0, ("greeting", opening.greeting))

    def apply_capabilities(self, response: Response) -> None:
        entries = capability_entries(response.lines)
        if not entries:
            return
        opening = self.opening
        opening.capabilities = []
        for name, value in entries:
            if name not in opening.capabilities:
                append_capped(opening.capabilities, name)
            if name == "SASL":
                opening.auth_mechanisms = [m for m in map(sasl_mechanism, value.split()) if m]
            elif name == "IMPLEMENTATION":
                opening.implementation = show(value)
        opening.starttls_offered = "STARTTLS" in opening.capabilities

    def skip_responses_before_commands(self) -> None:
        pending = self.responses[self.next_response :]
        client_lines = self.client.count(b"\n") + (bool(self.client) and not self.client.endswith(b"\n"))
        if client_lines:
            run = 0
            while run < len(pending) and pending[run].status in REFUSALS:
                run += 1
            count = min(run, max(0, len(pending) - client_lines))
        else:
            count = len(pending)
        for _ in range(count):
            response = self.take_response()
            if response is None:
                break
            if len(self.opening.replies_before_commands) < MAX_BEFORE_COMMANDS:
                self.opening.replies_before_commands.append(response.render())
            if response.status in REFUSALS:
                self.opening.note_error(None, response.render())

    def command(self, line: LogicalLine) -> None:
        verb = verb_of(line.text)
        shown = self.show(line, verb)
        if shown == MASK:  # a stray SASL answer: a server may echo it
            self.hide(line)
        if self.opening.client_first_line is None:
            self.opening.client_first_line = shown
        append_capped(self.opening.commands, verb if verb in SIEVE_VERBS else "?")
        response = self.take_response()
        if verb == "AUTHENTICATE":
            self.authenticate(line, response)
        elif verb == "STARTTLS":
            self.starttls(response)
        elif verb == "CAPABILITY" and response is not None:
            self.apply_capabilities(response)
        if response is not None and response.status in REFUSALS:
            self.opening.note_error(shown, response.render())

    @staticmethod
    def show(line: LogicalLine, verb: str) -> str:
        if verb != "AUTHENTICATE":
            return show_logical_line(line, SIEVE_VERBS)
        words = arguments(line.text)
        mechanism = sasl_mechanism(words[1]) if len(words) > 1 else None
        shown = f'AUTHENTICATE "{mechanism or MASK}"' if len(words) > 1 else "AUTHENTICATE"
        return shown + (f" {MASK}" if len(words) > 2 or line.literals else "")

    def authenticate(self, line: LogicalLine, response: Response | None) -> None:
        words = arguments(line.text)
        self.opening.auth_method = sasl_mechanism(words[1]) if len(words) > 1 else None
        self.hide(LogicalLine(b" ".join(words[2:]), line.literals))
        if response is None or response.status is None:
            self.hide_the_rest()
            return
        for _challenge in response.lines:  # each server challenge gets one client answer
            answer = logical_line(self.commands)
            if answer is None:
                break
            self.hide(answer)
        self.opening.auth_reply = response.render()

    def starttls(self, response: Response | None) -> None:
        self.opening.starttls_requested = True
        if response is None or response.status is None:
            if starts_with_tls(self.client[self.commands.pos :]):
                self.client_tls_from, self.stopped = self.commands.pos, True
            return
        self.opening.starttls_reply = response.render()
        if response.status == "OK":
            self.opening.upgraded, self.stopped = True, True
            self.client_tls_from, self.server_tls_from = self.commands.pos, response.end

    def hide(self, line: LogicalLine) -> None:
        for word in arguments(line.text):
            if not word.startswith(b"{"):
                self.secrets |= secret_forms(word)
        for literal in line.literals:
            self.secrets |= secret_forms(literal)

    def hide_the_rest(self) -> None:
        """Without the server's responses, answers to challenges cannot be told from
        commands: treat every lone string that follows as a credential."""
        while (line := logical_line(self.commands)) is not None:
            if line.literals or (len(arguments(line.text)) == 1 and verb_of(line.text) not in SIEVE_VERBS):
                self.hide(line)
        self.stopped = True


def recognise_sieve(client: bytes, server: bytes) -> Parsed:
    return _Session(client, server).run()
