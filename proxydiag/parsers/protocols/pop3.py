"""POP3 openings: greeting, CAPA, STLS, USER/PASS/APOP/AUTH (masked), the first -ERR.
Each command takes the next status line; multi-line answers end with a lone dot."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple

from proxydiag.parsers.protocols.base import MailOpening
from proxydiag.parsers.protocols.text import (
    MAX_BEFORE_COMMANDS,
    REPLY_LIMIT,
    Cursor,
    Parsed,
    append_capped,
    begin_command,
    note_reply_before_commands,
    sasl_exchange,
    sasl_mechanism,
    secret_forms,
    show,
    verb_of,
)
from proxydiag.parsers.protocols.tls import starts_with_tls

POP3_VERBS = frozenset(
    [
        "USER",
        "PASS",
        "APOP",
        "AUTH",
        "STLS",
        "CAPA",
        "QUIT",
        "STAT",
        "LIST",
        "RETR",
        "DELE",
        "NOOP",
        "RSET",
        "TOP",
        "UIDL",
        "UTF8",
        "LANG",
    ]
)
MULTI_LINE_ALWAYS = frozenset({"CAPA", "RETR", "TOP"})
MULTI_LINE_WITHOUT_ARGUMENT = frozenset({"LIST", "UIDL", "AUTH"})  # bare AUTH lists mechanisms
OK, ERR, CONTINUE = "+OK", "-ERR", "+"
END_OF_LIST = b"."
MAX_SOFTWARE_REPLIES = 40

_STATUS = re.compile(rb"^(\+OK|-ERR|\+)(?=[\s\[]|$)", re.I)


@dataclass(slots=True)
class Pop3Opening(MailOpening):
    pass


class Status(NamedTuple):
    kind: str | None  # +OK, -ERR, + (SASL challenge); None: not a status line
    line: bytes

    def render(self) -> str:
        return show(self.line, REPLY_LIMIT)


def status_of(line: bytes) -> Status:
    match = _STATUS.match(line)
    return Status(match.group(1).upper().decode() if match else None, line)


def count_replies_before_commands(server_lines: list[bytes], client: bytes) -> int:
    """Leading -ERR lines after the greeting that outnumber the client's commands: the
    answers to a PROXY header (stripped from the client side) read as commands."""
    statuses = [status_of(line).kind for line in server_lines]
    client_lines = client.count(b"\n") + (bool(client) and not client.endswith(b"\n"))
    if not client_lines:
        return len(server_lines)
    run = 0
    while run < len(statuses) and statuses[run] == ERR:
        run += 1
    surplus = sum(kind in (OK, ERR) for kind in statuses) - client_lines
    return min(run, max(0, surplus))


class _Session:
    def __init__(self, client: bytes, server: bytes) -> None:
        self.opening = Pop3Opening(protocol="pop3")
        self.client = client
        self.commands = Cursor(client)
        self.replies = Cursor(server)
        self.secrets: set[str] = set()
        self.texts: list[tuple[str, str]] = []
        self.client_tls_from: int | None = None
        self.server_tls_from: int | None = None
        self.stopped = False

    def run(self) -> Parsed:
        if self.greet():
            self.skip_replies_before_commands()
            while not self.stopped and (line := self.commands.line()) is not None:
                self.command(line)
        return Parsed(self.opening, frozenset(self.secrets), tuple(self.texts), self.client_tls_from, self.server_tls_from)

    def take_reply(self) -> Status | None:
        line = self.replies.line()
        if line is None:
            return None
        if len(self.texts) < MAX_SOFTWARE_REPLIES:
            self.texts.append(("reply", show(line)))
        return status_of(line)

    def greet(self) -> bool:
        greeting = self.take_reply()
        if greeting is None or greeting.kind not in (OK, ERR):
            return False
        opening = self.opening
        opening.greeting_code = greeting.kind
        opening.greeting = show(greeting.line[len(greeting.kind) :].strip())
        opening.greeting_refused = greeting.kind == ERR
        self.texts.insert(0, ("greeting", opening.greeting))
        return True

    def skip_replies_before_commands(self) -> None:
        rest = Cursor(self.replies.data, self.replies.pos)
        lines = []
        while (line := rest.line()) is not None:
            lines.append(line)
        for _ in range(count_replies_before_commands(lines, self.client)):
            reply = self.take_reply()
            if reply is None:
                break
            note_reply_before_commands(self.opening, reply.render(), reply.kind == ERR, MAX_BEFORE_COMMANDS)

    def command(self, line: bytes) -> None:
        verb, shown = begin_command(self, line, POP3_VERBS)
        reply = self.take_reply()
        handler = self.HANDLERS.get(verb)
        if handler is not None:
            reply = handler(self, line, reply)
        elif reply is not None and reply.kind == OK and self.answers_with_list(line):
            self.read_list()
        if reply is not None and reply.kind == ERR:
            self.opening.note_error(shown, reply.render())

    @staticmethod
    def answers_with_list(line: bytes) -> bool:
        words = line.split()
        verb = verb_of(line)
        return verb in MULTI_LINE_ALWAYS or (verb in MULTI_LINE_WITHOUT_ARGUMENT and len(words) == 1)

    def read_list(self) -> list[bytes]:
        items: list[bytes] = []
        while (line := self.replies.line()) is not None and line != END_OF_LIST:
            if len(items) < MAX_SOFTWARE_REPLIES:
                items.append(line)
        return items

    def capa(self, _line: bytes, reply: Status | None) -> Status | None:
        if reply is None or reply.kind != OK:
            return reply
        opening = self.opening
        opening.capabilities, opening.auth_mechanisms = [], []
        for item in self.read_list():
            words = item.split()
            if not words:
                continue
            keyword = show(words[0].upper())
            append_capped(opening.capabilities, keyword)
            self.texts.append(("capability list", show(item)))
            if keyword == "SASL":
                opening.auth_mechanisms = [name for name in map(sasl_mechanism, words[1:]) if name]
        opening.starttls_offered = "STLS" in opening.capabilities
        return reply

    def stls(self, _line: bytes, reply: Status | None) -> Status | None:
        self.opening.starttls_requested = True
        if reply is None:
            if starts_with_tls(self.client[self.commands.pos :]):
                self.client_tls_from, self.stopped = self.commands.pos, True
            return None
        self.opening.starttls_reply = reply.render()
        if reply.kind == OK:
            self.opening.upgraded, self.stopped = True, True
            self.client_tls_from, self.server_tls_from = self.commands.pos, self.replies.pos
        return reply

    def user(self, line: bytes, reply: Status | None) -> Status | None:
        self.hide_arguments(line)
        return reply

    def password(self, line: bytes, reply: Status | None) -> Status | None:
        self.hide_arguments(line)
        self.opening.auth_method = "USER/PASS"
        self.opening.auth_reply = reply.render() if reply is not None else None
        return reply

    def apop(self, line: bytes, reply: Status | None) -> Status | None:
        self.hide_arguments(line)
        self.opening.auth_method = "APOP"
        self.opening.auth_reply = reply.render() if reply is not None else None
        return reply

    def auth(self, line: bytes, reply: Status | None) -> Status | None:
        words = line.split()
        if len(words) == 1:  # RFC 1734 servers answer a bare AUTH with their mechanisms
            if reply is not None and reply.kind == OK:
                listed = [name for name in map(sasl_mechanism, self.read_list()) if name]
                self.opening.auth_mechanisms = self.opening.auth_mechanisms or listed
            return reply
        self.opening.auth_method = sasl_mechanism(words[1])
        return sasl_exchange(self, words[2:], reply, lambda challenge: challenge.kind == CONTINUE)

    def hide_arguments(self, line: bytes) -> None:
        words = line.split(None, 1)
        if len(words) > 1:
            self.secrets |= secret_forms(words[1])
            for word in words[1].split():
                self.secrets |= secret_forms(word)

    def hide_the_rest(self) -> None:
        """Without the server's replies, SASL continuation lines cannot be told from
        commands: treat everything that follows as a credential."""
        while (line := self.commands.line()) is not None:
            if len(line.split()) == 1 and verb_of(line) not in POP3_VERBS:
                self.secrets |= secret_forms(line)
        self.stopped = True


    # Verb -> method, shared by every session (bound methods kept per session would make
    # each one a reference cycle for the garbage collector).
    HANDLERS: dict[str, Callable[[_Session, bytes, Status | None], Status | None]] = {
        "CAPA": capa,
        "STLS": stls,
        "USER": user,
        "PASS": password,
        "APOP": apop,
        "AUTH": auth,
    }


def recognise_pop3(client: bytes, server: bytes) -> Parsed:
    return _Session(client, server).run()
