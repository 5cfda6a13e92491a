"""SMTP and LMTP openings: greeting, EHLO/LHLO capabilities, STARTTLS, AUTH, the first
error. Replies are matched to commands in order, which is also right for pipelining."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable

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

SMTP_VERBS = frozenset(
    {
        "HELO",
        "EHLO",
        "LHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "VRFY",
        "EXPN",
        "HELP",
        "NOOP",
        "QUIT",
        "STARTTLS",
        "AUTH",
        "ETRN",
        "ATRN",
        "TURN",
        "BURL",
        "XCLIENT",
        "XFORWARD",
    }
)
EXTENDED_HELLO = frozenset({"EHLO", "LHLO"})
SYNTAX_ERROR = "500"  # "command unrecognised": never the answer to a verb the server knows
HANG_UP = frozenset({"221", "421"})
STARTTLS_ACCEPTED = "220"
AUTH_CHALLENGE = "334"
DATA_GO_AHEAD = "354"
END_OF_DATA = "<end of data>"
MAX_SOFTWARE_REPLIES = 40

_REPLY_LINE = re.compile(rb"^(\d{3})([ -]|$)(.*)$", re.S)


@dataclass(slots=True)
class SmtpOpening(MailOpening):
    hello_command: str | None = None  # EHLO, HELO or LHLO, the last one sent
    mail_seen: bool = False
    rcpt_seen: bool = False
    data_seen: bool = False
    quit_seen: bool = False


@dataclass(slots=True)
class Reply:
    code: str
    texts: list[bytes] = field(default_factory=list)
    end: int = 0  # offset just after the reply in the server's stream
    complete: bool = False

    def render(self) -> str:
        return _render(self.code, tuple(self.texts))

    @property
    def is_error(self) -> bool:
        return self.code[0] in "45"


@functools.lru_cache(maxsize=1024)
def _render(code: str, texts: tuple[bytes, ...]) -> str:
    """A reply as shown (the same greeting and EHLO reply open thousands of connections)."""
    text = " ".join(show(part) for part in texts)
    return show(f"{code} {text}".rstrip().encode("latin-1"), REPLY_LIMIT)


def read_replies(server: bytes) -> list[Reply]:
    """The server's replies, multi-line ones joined; reading stops at the first line that
    is not an SMTP reply line."""
    cursor, replies = Cursor(server), []
    current: Reply | None = None
    while (line := cursor.line()) is not None:
        match = _REPLY_LINE.match(line)
        if not match:
            break
        digits, separator, text = match.groups()
        code = digits.decode()
        if current is None or current.complete or code != current.code:
            current = Reply(code)
            replies.append(current)
        current.texts.append(text)
        current.end = cursor.pos
        current.complete = separator != b"-"
    return replies


def count_replies_before_commands(pending: list[Reply], client: bytes) -> int:
    """How many of the replies after the greeting answer nothing in the client's stream.

    A PROXY header sent to a listener that does not expect one is answered as commands
    before anything the client sends: `500` syntax errors, then perhaps a hang-up (the v2
    signature holds `QUIT\\n`)."""
    first = Cursor(client).line()
    if first is None:
        return len(pending)
    run = _leading_syntax_errors(pending)
    if verb_of(first) in SMTP_VERBS:
        return run
    client_lines = client.count(b"\n") + (not client.endswith(b"\n"))
    return min(run, max(0, len(pending) - client_lines))


def _leading_syntax_errors(pending: list[Reply]) -> int:
    run = 0
    while run < len(pending) and pending[run].code == SYNTAX_ERROR:
        run += 1
    if 0 < run < len(pending) and pending[run].code in HANG_UP:
        run += 1
    return run


def hello_capabilities(reply: Reply) -> tuple[list[str], list[str]]:
    """(keywords, AUTH mechanisms) of an EHLO/LHLO reply; its first line is the host name.
    `AUTH=PLAIN LOGIN` is the pre-standard spelling some servers still send."""
    keywords: list[str] = []
    mechanisms: list[str] = []
    for text in reply.texts[1:]:
        words = text.replace(b"=", b" ", 1).split() if text.upper().startswith(b"AUTH=") else text.split()
        if not words:
            continue
        keyword = show(words[0].upper())
        if keyword not in keywords:
            append_capped(keywords, keyword)
        if keyword == "AUTH":
            for word in words[1:]:
                name = sasl_mechanism(word)
                if name and name not in mechanisms:
                    append_capped(mechanisms, name)
    return keywords, mechanisms


class _Session:
    """Replays the opening: each client command takes the next reply."""

    def __init__(self, client: bytes, server: bytes, protocol: str) -> None:
        self.opening = SmtpOpening(protocol=protocol)
        self.client = client
        self.commands = Cursor(client)
        self.replies = read_replies(server)
        self.next_reply = 0
        self.secrets: set[str] = set()
        self.texts: list[tuple[str, str]] = []
        self.client_tls_from: int | None = None
        self.server_tls_from: int | None = None
        self.stopped = False
        self.accepted_recipients = 0

    def run(self) -> Parsed:
        if self.replies:
            first = self.take_reply()
            if first is not None:
                self.greet(first)
            self.skip_replies_before_commands()
        while not self.stopped and (line := self.commands.line()) is not None:
            self.command(line)
        return Parsed(self.opening, frozenset(self.secrets), tuple(self.texts), self.client_tls_from, self.server_tls_from)

    def take_reply(self) -> Reply | None:
        if self.next_reply >= len(self.replies):
            return None
        reply = self.replies[self.next_reply]
        self.next_reply += 1
        if len(self.texts) < MAX_SOFTWARE_REPLIES:
            self.texts.append(("reply", reply.render()))
        return reply

    def greet(self, reply: Reply) -> None:
        opening = self.opening
        opening.greeting_code = reply.code
        opening.greeting = " ".join(show(text) for text in reply.texts)
        opening.greeting_refused = reply.is_error
        self.texts.insert(0, ("greeting", opening.greeting))

    def skip_replies_before_commands(self) -> None:
        pending = self.replies[self.next_reply :]
        for _ in range(count_replies_before_commands(pending, self.client)):
            reply = self.take_reply()
            if reply is None:
                break
            note_reply_before_commands(self.opening, reply.render(), reply.is_error, MAX_BEFORE_COMMANDS)

    def command(self, line: bytes) -> None:
        verb, shown = begin_command(self, line, SMTP_VERBS)
        reply = self.take_reply()
        handler = self.HANDLERS.get(verb)
        if handler is not None:
            reply = handler(self, line, reply)
        if reply is not None and reply.is_error:
            self.opening.note_error(shown, reply.render())

    def hello(self, line: bytes, reply: Reply | None) -> Reply | None:
        verb = verb_of(line)
        self.opening.hello_command = verb
        if reply is not None and reply.code == "250" and verb in EXTENDED_HELLO:
            keywords, mechanisms = hello_capabilities(reply)
            self.opening.capabilities = keywords
            self.opening.auth_mechanisms = mechanisms
            self.opening.starttls_offered = "STARTTLS" in keywords
        return reply

    def mail(self, _line: bytes, reply: Reply | None) -> Reply | None:
        self.opening.mail_seen = True
        self.accepted_recipients = 0
        return reply

    def rcpt(self, _line: bytes, reply: Reply | None) -> Reply | None:
        self.opening.rcpt_seen = True
        if reply is not None and reply.code.startswith("2"):
            self.accepted_recipients += 1
        return reply

    def quit(self, _line: bytes, reply: Reply | None) -> Reply | None:
        self.opening.quit_seen = True
        return reply

    def data(self, _line: bytes, reply: Reply | None) -> Reply | None:
        self.opening.data_seen = True
        if reply is None or reply.code != DATA_GO_AHEAD:
            return reply
        if not self.commands.skip_past_line(b"."):
            return None
        # LMTP answers the message once per accepted recipient, SMTP once.
        answers = max(self.accepted_recipients, 1) if self.opening.protocol == "lmtp" else 1
        for _ in range(answers):
            answer = self.take_reply()
            if answer is not None and answer.is_error:
                self.opening.note_error(END_OF_DATA, answer.render())
        return None

    def bdat(self, line: bytes, reply: Reply | None) -> Reply | None:
        self.opening.data_seen = True
        words = line.split()
        if len(words) > 1 and words[1].isdigit():
            self.commands.take(int(words[1]))
        return reply

    def starttls(self, _line: bytes, reply: Reply | None) -> Reply | None:
        self.opening.starttls_requested = True
        if reply is None:
            if starts_with_tls(self.client[self.commands.pos :]):
                self.client_tls_from, self.stopped = self.commands.pos, True
            return None
        self.opening.starttls_reply = reply.render()
        if reply.code == STARTTLS_ACCEPTED:
            self.opening.upgraded = True
            self.client_tls_from, self.server_tls_from = self.commands.pos, reply.end
            self.stopped = True
        return reply

    def auth(self, line: bytes, reply: Reply | None) -> Reply | None:
        words = line.split()
        self.opening.auth_method = sasl_mechanism(words[1]) if len(words) > 1 else None
        return sasl_exchange(self, words[2:], reply, lambda challenge: challenge.code == AUTH_CHALLENGE)

    def hide_the_rest(self) -> None:
        """Without the server's replies, SASL continuation lines cannot be told from
        commands: treat everything that follows as a credential."""
        while (line := self.commands.line()) is not None:
            if len(line.split()) == 1 and verb_of(line) not in SMTP_VERBS:
                self.secrets |= secret_forms(line)
        self.stopped = True


    # Verb -> method, shared by every session (bound methods kept per session would make
    # each one a reference cycle for the garbage collector).
    HANDLERS: dict[str, Callable[[_Session, bytes, Reply | None], Reply | None]] = {
        "HELO": hello,
        "EHLO": hello,
        "LHLO": hello,
        "MAIL": mail,
        "RCPT": rcpt,
        "DATA": data,
        "BDAT": bdat,
        "QUIT": quit,
        "STARTTLS": starttls,
        "AUTH": auth,
    }


def recognise_smtp(client: bytes, server: bytes, protocol: str = "smtp") -> Parsed:
    return _Session(client, server, protocol).run()
