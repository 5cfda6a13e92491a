"""`proxydiag probe HOST:PORT`: ask a live listener what it expects, without a capture.

Per target a bounded plan of connections (probe_steps.PLAN), each with per-step timeouts
on the socket: no header (does it greet, stay silent, or greet only once the client
speaks?), then v1, v2, v2 with the SSL TLV and v2 LOCAL headers naming documentation
addresses. Each session asks for the capabilities, takes STARTTLS once where offered, and
says QUIT/LOGOUT. Every byte is recorded as it crossed the wire (TLS runs in memory over
the socket) so that `-w` can write the conversations as a capture. probe_judge.py reads
the records."""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.protocols import MailOpening, Opening, recognise
from proxydiag.probe.steps import (
    PLAN,
    Target,
    build_header,
    command,
    greeting_complete,
    reply_complete,
    role_of,
    service_of,
)

SETTLE = 0.4  # seconds the probe listens after a greeting for replies to its header's bytes
QUIT_WAIT = 1.0
RECV_SIZE = 65536
# Server bytes arriving within 10 ms join the event before it while that is under a segment:
# a trickle of single bytes costs no more memory than a stream of full segments.
COALESCE, COALESCE_UP_TO = 0.01, 1460


@dataclass(frozen=True)
class ReadLimits:
    """What the probe reads from a listener, in bytes: a mail server's opening is a few
    kilobytes, so anything past these is a listener that does not end (or means harm)."""

    line: int = 8 * 1024  # one line of text (the longest capability lines are about 1 KiB)
    step: int = 64 * 1024  # one connection, TLS records included
    target: int = 192 * 1024  # all the connections to one target


@dataclass
class TargetBudget:
    """The bytes a target may still send before the probe stops reading from it."""

    left: int


class ProbeError(Exception):
    """The target could not be probed at all (one line for the user)."""


@dataclass(slots=True)
class Event:
    at: float  # seconds since the connection was made
    side: str  # "client" (the probe) or "server"
    data: bytes = b""
    flag: str = ""  # "fin" or "rst" (data empty then)


@dataclass
class StepRecord:
    step: str
    header: bytes
    local: tuple[str, int] = ("", 0)
    remote: tuple[str, int] = ("", 0)
    started: float = 0.0  # wall-clock time of the connection (for the capture)
    connect_error: str | None = None  # refused, timeout, or the OS's words
    events: list[Event] = field(default_factory=list)
    client_text: bytes = b""  # the probe's application bytes (plaintext, after any header)
    server_text: bytes = b""
    first_server_byte: float | None = None
    probe_spoke_at: float | None = None  # when the probe sent its first command
    spoke_before_greeting: bool = False
    ended_by: str | None = None  # "server-fin", "server-rst", or "probe"
    cut: str | None = None  # why the probe stopped reading (a limit of ReadLimits), if it did
    greeting_unfinished: bool = False  # bytes came, but no whole greeting within the timeout
    ended_at: float | None = None
    tls: JsonDict | None = None  # implicit TLS: the handshake
    starttls: JsonDict | None = None
    opening: Opening | None = None

    @property
    def greeted(self) -> bool:
        return isinstance(self.opening, MailOpening) and self.opening.greeting is not None

    @property
    def greeting_time(self) -> float | None:
        return self.first_server_byte if self.server_text else None


@functools.cache
def _reporting_context() -> ssl.SSLContext:
    """One client context for every handshake (loading the system's CAs took 30 ms a step)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # we report, we do not judge
    return context


class Wire:
    """One connection, recorded; TLS (implicit or after STARTTLS) through memory BIOs."""

    def __init__(self, sock: socket.socket, record: StepRecord, clock: Callable[[], float],
                 limits: ReadLimits = ReadLimits(), budget: TargetBudget | None = None) -> None:
        self.sock, self.record, self.clock = sock, record, clock
        self.limits = limits
        self.budget = budget if budget is not None else TargetBudget(limits.target)
        self.step_left = limits.step
        self.line_length = 0  # of the application line still open
        self.t0 = clock()
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.open = True

    def now(self) -> float:
        return round(self.clock() - self.t0, 6)

    def send_raw(self, data: bytes) -> None:
        self.record.events.append(Event(self.now(), "client", data))
        try:
            self.sock.sendall(data)
        except OSError:
            self._ended("server-rst")

    def send(self, data: bytes) -> None:
        if not self.open or not data:
            return
        if self.record.probe_spoke_at is None:
            self.record.probe_spoke_at = self.now()
        self.record.client_text += data
        if self.tls is None:
            self.send_raw(data)
            return
        self.tls.write(data)
        self._flush()

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.send_raw(pending)

    def _recv_raw(self, deadline: float) -> bytes | None:
        """Bytes from the socket; b"" at the end of the stream; None when the deadline passed."""
        remaining = deadline - self.clock()
        if remaining <= 0 or not self.open:
            return None
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(min(RECV_SIZE, self.step_left, self.budget.left))
        except TimeoutError:
            return None
        except OSError:
            self._ended("server-rst")
            return b""
        if not data:
            self._ended("server-fin")
            return b""
        if self.record.first_server_byte is None:
            self.record.first_server_byte = self.now()
        self._keep(data)
        self.step_left -= len(data)
        self.budget.left -= len(data)
        if self.budget.left <= 0:
            self.cut(f"the listener sent {self.limits.target} bytes to the probe in all")
        elif self.step_left <= 0:
            self.cut(f"the listener sent {self.limits.step} bytes on one connection")
        return data

    def _keep(self, data: bytes) -> None:
        """The server's bytes as an event; a trickle joins the event before it."""
        events, now = self.record.events, self.now()
        last = events[-1] if events else None
        if (last is not None and last.side == "server" and not last.flag and 0 < len(last.data) < COALESCE_UP_TO
                and now - last.at < COALESCE):
            last.data += data
        else:
            events.append(Event(now, "server", data))

    def cut(self, reason: str) -> None:
        """Stop reading: a limit was reached. The connection ends as the probe's own close."""
        if self.record.cut is None:
            self.record.cut = reason
        self._ended("probe")

    def _count_lines(self, text: bytes) -> None:
        newline = text.rfind(b"\n")
        self.line_length = len(text) - newline - 1 if newline >= 0 else self.line_length + len(text)
        if self.line_length > self.limits.line:
            self.cut(f"the listener sent a line longer than {self.limits.line} bytes")

    def _ended(self, how: str) -> None:
        if self.open:
            self.open = False
            self.record.ended_by, self.record.ended_at = how, self.now()
            if how != "probe":
                self.record.events.append(Event(self.now(), "server", flag="rst" if how == "server-rst" else "fin"))

    def read(self, done: Callable[[bytes], bool], timeout: float) -> bytes:
        """Application bytes until `done(what came so far)`, the end of the stream or the
        timeout."""
        deadline, got = self.clock() + timeout, bytearray()
        while self.open:
            raw = self._recv_raw(deadline)
            if raw is None:
                break
            text = self._decrypt(raw) if self.tls is not None else raw
            got += text
            self._count_lines(text)
            # every reply ends a line: the whole is looked at only then (a trickle stays linear)
            if text.endswith(b"\n") and done(bytes(got)):
                break
        self.record.server_text += got
        return bytes(got)

    def _decrypt(self, raw: bytes) -> bytes:
        assert self.tls is not None
        if raw:
            self.incoming.write(raw)
        else:
            self.incoming.write_eof()
        plain = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            except ssl.SSLError:
                break
            if not chunk:
                break
            plain += chunk
        self._flush()
        return plain

    def start_tls(self, server_name: str | None, timeout: float) -> JsonDict:
        """The handshake; what it showed (version, cipher, certificate) or why it failed."""
        self.tls = _reporting_context().wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        deadline = self.clock() + timeout
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                raw = self._recv_raw(deadline)
                if raw is None and self.record.cut:
                    return {"ok": False, "error": f"handshake not finished: the probe stopped reading ({self.record.cut})"}
                if raw is None:
                    return {"ok": False, "error": f"no answer to the ClientHello within {timeout:g} s"}
                if not raw:
                    ended = self.record.ended_by
                    return {"ok": False, "error": f"the server ended the connection ({ended}) during the handshake"}
                self.incoming.write(raw)
            except ssl.SSLError as error:
                self._flush()
                return {"ok": False, "error": f"handshake failed: {error.reason or error}"}
        self._flush()
        return {"ok": True, "version": self.tls.version(), "cipher": (self.tls.cipher() or ("",))[0],
                **certificate_facts(self.tls.getpeercert(binary_form=True))}

    def close(self) -> None:
        self._ended("probe")
        self.record.events.append(Event(self.now(), "client", flag="fin"))
        with contextlib.suppress(OSError):
            self.sock.close()


def certificate_facts(der: bytes | None) -> JsonDict:
    """Subject, issuer and expiry of the server's certificate (not verified: the probe
    reports what it was shown)."""
    if not der:
        return {"subject": None, "issuer": None, "not_after": None}
    from cryptography import x509  # imported here: only TLS probes need it

    # The listener chose these bytes: a certificate the library refuses (version 4, times it
    # cannot read) is reported as such, and its warnings are not the user's business.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cert = x509.load_der_x509_certificate(der)
            return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                    "not_after": cert.not_valid_after_utc.isoformat()}
        except Exception as error:  # cryptography raises ValueError and others on what it cannot parse
            return {"subject": None, "issuer": None, "not_after": None,
                    "unreadable": f"certificate unreadable ({len(der)} bytes): {type(error).__name__}: {error}"[:300]}


@dataclass
class ProbeOptions:
    timeout: float = 5.0
    tls: bool | None = None  # None: by the port (implicit-TLS ports of the service table)
    source: str | None = None
    role: str | None = None  # front or server; None: by the port (probe_steps.role_of)
    clock: Callable[[], float] = time.monotonic
    limits: ReadLimits = ReadLimits()


SocketAddress = tuple[Any, ...]  # as getaddrinfo gives it: (host, port) for IPv4, (host, port, flow, scope) for IPv6


def resolve(target: Target, source: str | None) -> tuple[int, SocketAddress]:
    """The address to connect to (of the source's family when one is given)."""
    family = socket.AF_UNSPEC
    if source is not None:
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
    try:
        infos = socket.getaddrinfo(target.host, target.port, family, socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ProbeError(f"{target}: cannot resolve {target.host!r}: {error.strerror}") from None
    info = infos[0]
    return info[0], info[4]


def run_step(target: Target, step: str, address: tuple[int, SocketAddress], options: ProbeOptions, do_starttls: bool,
             budget: TargetBudget | None = None) -> StepRecord:
    """One connection of the plan; `budget`: what the target may still send."""
    family, sockaddr = address
    service = service_of(target.port)
    protocol = service.protocol if service else None
    use_tls = options.tls if options.tls is not None else bool(service and service.implicit_tls)
    header = build_header(step, family == socket.AF_INET6, target.port) if step != "none" else b""
    record = StepRecord(step, header, started=time.time())
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if options.source:
            sock.bind((options.source, 0))
        sock.settimeout(options.timeout)
        sock.connect(sockaddr)
    except TimeoutError:
        sock.close()
        record.connect_error = "timeout"
        return record
    except OSError as error:
        sock.close()
        record.connect_error = "refused" if isinstance(error, ConnectionRefusedError) else (error.strerror or str(error))
        return record
    record.local, record.remote = sock.getsockname()[:2], sock.getpeername()[:2]
    wire = Wire(sock, record, options.clock, options.limits, budget)
    try:
        converse(wire, record, protocol, header, use_tls, do_starttls, target, options.timeout)
    finally:
        wire.close()
    record.opening = recognise(record.client_text, record.server_text, target.port)
    return record


def converse(wire: Wire, record: StepRecord, protocol: str | None, header: bytes, use_tls: bool, do_starttls: bool,
             target: Target, timeout: float) -> None:
    if header:
        wire.send_raw(header)
    server_name = None if _is_address(target.host) else target.host
    if use_tls:
        record.tls = wire.start_tls(server_name, timeout)
        if not record.tls["ok"]:
            return
    greeting = wire.read(lambda data: greeting_complete(protocol, data), timeout)
    if not greeting and wire.open and not header:
        # Silent: does it greet once the client speaks (a proxy waiting for the client)?
        record.spoke_before_greeting = True
        wire.send(command(protocol, "hello"))
        if wire.read(lambda data: greeting_complete(protocol, data), timeout):
            wire.read(lambda data: False, SETTLE)
            _leave(wire, protocol)
        return
    if not greeting or not wire.open:
        return
    if not greeting_complete(protocol, greeting):
        # A greeting still going on (a trickle, postscreen's pregreet test): speaking now would
        # be talking too soon, and waiting on would let the listener hold the probe for ever.
        record.greeting_unfinished = True
        return
    protocol = recognise(b"", greeting, target.port).protocol or protocol
    wire.read(lambda data: False, SETTLE)  # the header's bytes answered as commands?
    _ask(wire, protocol, "hello", timeout)
    if do_starttls and not use_tls and _offers_starttls(record, target.port):
        _ask(wire, protocol, "starttls", timeout)
        if _mail_opening(record, target.port).upgraded:
            record.starttls = wire.start_tls(server_name, timeout)
            if not record.starttls["ok"]:
                return
    _leave(wire, protocol)


def _ask(wire: Wire, protocol: str | None, what: str, timeout: float) -> None:
    wire.send(command(protocol, what))
    wire.read(lambda data: reply_complete(protocol, what, data), timeout)


def _leave(wire: Wire, protocol: str | None) -> None:
    wire.send(command(protocol, "quit"))
    wire.read(lambda data: False, QUIT_WAIT)


def _mail_opening(record: StepRecord, port: int) -> MailOpening:
    opening = recognise(record.client_text, record.server_text, port)
    return opening if isinstance(opening, MailOpening) else MailOpening()


def _offers_starttls(record: StepRecord, port: int) -> bool:
    return bool(_mail_opening(record, port).starttls_offered)


def _is_address(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


@dataclass
class TargetProbe:
    target: Target
    address: str = ""
    planned: int = len(PLAN)
    records: list[StepRecord] = field(default_factory=list)
    stopped: str | None = None  # why the plan ended early
    error: str | None = None  # why the target could not be probed at all
    role: str | None = None  # what the user said the listener is; None: by its port

    @property
    def judged_as(self) -> str:
        """`front` (where real clients connect) or `server` (behind a proxy)."""
        return self.role or role_of(service_of(self.target.port))


def probe_target(target: Target, options: ProbeOptions, announce: Callable[[str], None] = lambda line: None) -> TargetProbe:
    """Run the plan against one target, stopping early where going on would be impolite or
    pointless. Raises ProbeError when the target cannot be probed at all."""
    family, sockaddr = resolve(target, options.source)
    result = TargetProbe(target, address=sockaddr[0], role=options.role)
    announce(f"probing {target} ({sockaddr[0]}): at most {result.planned} connections, {options.timeout:g} s per step")
    starttls_done = False
    budget = TargetBudget(options.limits.target)
    for step in PLAN:
        record = run_step(target, step, (family, sockaddr), options, do_starttls=not starttls_done, budget=budget)
        result.records.append(record)
        starttls_done = starttls_done or record.starttls is not None
        reason = record.cut if budget.left <= 0 else stop_reason(result.records)
        if reason:
            result.stopped = reason
            break
    result.error = unusable(target, result.records, options.timeout)
    return result


def _nothing_back(record: StepRecord) -> bool:
    return record.connect_error is None and not record.server_text and record.ended_by == "probe" \
        and not (record.tls and record.tls.get("ok"))


def _refused_in_greeting(record: StepRecord) -> bool:
    return isinstance(record.opening, MailOpening) and record.opening.greeting_refused and not record.spoke_before_greeting


def _greeted_normally(records: list[StepRecord]) -> bool:
    return any(r.greeted and not _refused_in_greeting(r) and not r.spoke_before_greeting for r in records)


def stop_reason(records: list[StepRecord]) -> str | None:
    """Why the probe should make no more connections to this target, or None."""
    last, earlier = records[-1], records[:-1]
    served_before = any(r.server_text or (r.tls and r.tls.get("ok")) for r in earlier)
    if last.connect_error is not None:
        if not earlier:
            return "connect"
        if served_before:
            return f"ban-like refusal: the connection was {last.connect_error} after earlier ones were served"
        return f"connection {last.connect_error}"
    if _greeted_normally(earlier) and _refused_in_greeting(last):
        return "ban-like refusal: the greeting refused the connection after earlier ones were greeted"
    if len(records) >= 2 and all(_nothing_back(r) for r in records[-2:]):
        return "two connections in a row got no answer at all"
    if len(records) >= 2 and all(r.greeting_unfinished for r in records[-2:]):
        return "two connections in a row got no whole greeting within the timeout (raise --timeout?)"
    return None


def unusable(target: Target, records: list[StepRecord], timeout: float) -> str | None:
    """A one-line reason when the probe learnt nothing about the listener."""
    first = records[0]
    if first.connect_error == "refused":
        return f"{target}: connection refused (nothing listens there, or a firewall rejects it)"
    if first.connect_error == "timeout":
        return f"{target}: no answer to the connection within {timeout:g} s (unreachable or filtered)"
    if first.connect_error is not None:
        return f"{target}: cannot connect: {first.connect_error}"
    if all(_nothing_back(r) for r in records):
        return (f"{target}: accepted {len(records)} connection(s) but never answered within {timeout:g} s, "
                "with or without a header")
    return None
