"""--anonymize: every IP address, host name, opaque identifier and file path in the
finished document replaced by a stable pseudonym, in one pass before any renderer sees it.

A pseudonym keeps the address family and the kind of address (loopback, private,
shared CGNAT space, link-local, public), so a report still shows "a private client
behind a public proxy". The same input gets the same pseudonym everywhere in one
report. `::1` and the unspecified addresses identify nobody and stay as they are.

Besides addresses in text (next to any punctuation, after an escaped control byte,
zero-padded, with a port, as `[IPv6:...]`), the pass covers addresses inside header
hex evidence (packed, or as v1 text), TLV values that identify a client or an
account (UNIQUE_ID, custom TLVs, the AWS VPC endpoint id, AUTHORITY), host names
where a protocol puts one (single-label ones too), a value cut short by truncation,
and the input paths and the command line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING

from proxydiag.jsontypes import JsonDict, JsonValue
from proxydiag.parsers import proxy_protocol
from proxydiag.report.later import Later
from proxydiag.report.named import (
    AFTER,
    HOST_AFTER,
    QUOTE_PREFIX,
    hostnames_in,
    names_in_certificates,
    target_hosts,
    texts_under,
)
from proxydiag.report.opaque import is_opaque_tlv, opaque_tlv_spans, opaque_value, tlv_dicts
from proxydiag.report.pseudonyms import Pseudonyms, ip_of

if TYPE_CHECKING:
    from proxydiag.rules.base import Finding

Typed = Sequence["Finding"]  # the document's findings, typed, in its order (or none: each rewritten as text)

IPV4 = re.compile(AFTER + r"(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
IPV6 = re.compile(
    r"(?:(?<=IPv6:)|(?<=\\x[0-9a-f]{2})|(?<![\w:.]))(?=[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:)[0-9A-Fa-f:.]{2,51}(?![\w:])"
)
HEX_BLOB = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-f]{2}){6,}(?![0-9a-fA-F])")
# A value cut short by truncation: its last token before the ellipsis could be half an address.
# The cut patterns start only where a token starts and test for a digit, `.` or `:` ahead
# of the token's own characters (`[...]*[0-9.:][...]*` backtracked quadratically in a long
# token); a `.` that opens the final `...` does not count.
CUT_TOKEN = re.compile(r"(?<![0-9A-Za-z_.:\[\]-])(?=[A-Za-z_\[\]-]*[0-9.:](?!\.\.$))[0-9A-Za-z_.:\[\]-]*(?=\.\.\.$)")
# Header hex cut short for a report: its bytes are rewritten like any hex, and a last
# token that may be half a name or an address (as text inside the bytes) is left out.
HEX_BEFORE_CUT = re.compile(r"(?<![0-9A-Za-z_.:\[\]-])(?:[0-9a-f]{2}){6,}\.\.\.$")
CUT_TEXT = re.compile(r"(?<![0-9A-Za-z_.:\[\]-])(?=[A-Za-z_\[\]-]*[0-9.:])[0-9A-Za-z_.:\[\]-]*$")
# Keys whose strings come from the wire or from files (where names appear); findings quote them.
WIRE_KEYS = ("inputs", "connections", "findings", "stalwart_config", "command_line", "logs", "proxy_configs",
             "targets", "options", "endpoints", "servers_recognised", "proxy_config_errors", "log_inputs")
# Keys whose strings are wire, log or certificate text quoted as it came: only the tokens
# proxydiag knows survive (report/allowlist.py), whatever the rest looks like.
WIRE_TEXT_KEYS = frozenset({
    "client_first", "client_first_line", "server_first_line", "greeting", "auth_reply", "starttls_reply",
    "first_error", "replies_before_commands", "replies_to_header", "reply", "server", "implementation", "cn",
    "log_lines", "exchange", "subject", "issuer", "server_name", "capabilities", "auth_mechanisms",
})
# What stands before the text of a quoted line: the file and line of a log line, the time
# and side of a probe's exchange. Rewritten as the rest of the document is.
FILE_LINE = re.compile(r"^(\S+?):\d+: ")  # a quoted line of a file, after its name and number
# Keys whose text proxydiag wrote itself (a page's fix, with the capture's addresses put in):
# host names are learned from the wire, not from there (a TOML key would look like one).
OWN_TEXT_KEYS = frozenset({"fix"})
def anonymize(document: JsonDict, paths: Iterable[str] = (), findings: Typed = ()) -> JsonDict:
    """A new document (the given one is left as it was). `paths`: the files the command was
    given, hidden wherever they stand (an unreadable one is named only in an error).
    `findings`: the document's, typed: each message is told through the pseudonyms."""
    return Anonymizer().document(document, paths, findings)


def anonymize_streamed(document: JsonDict, connections: Callable[[], Iterable[JsonDict]], paths: Iterable[str] = (),
                       findings: Typed = (), told: list[Finding] | None = None) -> JsonDict:
    """`document` anonymised with its connections kept out of memory: `connections()` gives
    them once to learn from, then once more, rewritten one at a time as they are written
    (the document's "connections" becomes that iterator). `told`: where the typed findings
    go, told through the pseudonyms, once the document's are written."""
    learning = _Learning(Pseudonyms())
    learning.learn_paths(paths)
    for key, value in document.items():
        for piece in (connections() if key == "connections" else (value,)):
            learning.learn(key, piece)
    rewrite = learning.rewriter()
    result: JsonDict = {}
    for key, value in document.items():  # rewritten in the order they are written, as `anonymize` does
        if key == "connections":
            result[key] = (_transform(conn, rewrite) for conn in connections())
        elif key in WIRE_KEYS:
            transform = partial(_transform_findings, typed=findings, told=told) if key == "findings" else _transform
            result[key] = Later(partial(transform, value, rewrite)) if "connections" in result else transform(value, rewrite)
        else:
            result[key] = value
    result["anonymized"] = True
    return result


def anonymize_listing(document: JsonDict, connections: Callable[[], Iterable[JsonDict]], shown: int,
                      paths: Iterable[str] = (), findings: Typed = ()
                      ) -> tuple[JsonDict, list[Finding], Iterator[JsonDict]]:
    """A summarised document (its first `shown` connections) anonymised together with every
    connection after those, for a report that lists them all: the document, whole, its
    typed `findings` told through the pseudonyms, and the rest as an iterator rewritten as
    it is read."""
    told: list[Finding] = []
    streamed = anonymize_streamed(document, connections, paths, findings, told)
    rows = iter(streamed["connections"])
    first = list(islice(rows, shown))
    whole = {key: value.compute() if isinstance(value, Later) else value for key, value in streamed.items()}
    whole["connections"] = first
    return whole, told, rows


class Anonymizer:
    """Pseudonyms kept across documents: a stream of events (sniff --format jsonl, the
    metrics' labels) names each address, host and path the same way throughout. A
    pseudonym is chosen among addresses not seen so far, so one seen only later could
    coincide with it (the pseudonym ranges are documentation and reserved ones)."""

    def __init__(self) -> None:
        self.pseudonyms = Pseudonyms()

    def document(self, document: JsonDict, paths: Iterable[str] = (), findings: Typed = ()) -> JsonDict:
        return self.report(document, paths, findings)[0]

    def report(self, document: JsonDict, paths: Iterable[str] = (), findings: Typed = ()) -> tuple[JsonDict, list[Finding]]:
        """The document anonymised, and its `findings` (typed, in its order) told by
        `anonymized_finding` (none when they are not the document's)."""
        learning = _Learning(self.pseudonyms)
        learning.learn_paths(paths)
        for key, value in document.items():
            learning.learn(key, value)
        rewrite = learning.rewriter()
        told: list[Finding] = []
        result = {key: (_transform_findings(value, rewrite, findings, told) if key == "findings"
                        else _transform(value, rewrite)) if key in WIRE_KEYS else value
                  for key, value in document.items()}
        result["anonymized"] = True
        return result, told

    def connection(self, connection: JsonDict) -> JsonDict:
        return self.document({"connections": [connection]})["connections"][0]

    def findings(self, findings: list[JsonDict], typed: Typed = ()) -> list[JsonDict]:
        return self.document({"findings": findings}, findings=typed)["findings"]

    def text(self, text: str) -> str:
        return self.document({"options": {"text": text}})["options"]["text"]


class _Learning:
    """What the rewriting needs to know before it starts, gathered piece by piece: every
    original address (no pseudonym may equal one), the host names, the input paths, and
    the opaque TLV values (named before any hex holding the same bytes is rewritten)."""

    SEEN_TEXTS = 65_536  # texts already learned from, remembered to skip repeats (then forgotten)

    def __init__(self, pseudonyms: Pseudonyms) -> None:
        self.pseudonyms = pseudonyms
        self.hostnames: set[str] = set()
        self.names: set[str] = set()  # the values of certificates' names (O=, OU=, L=, ...)
        self.listeners: set[str] = set()  # Stalwart listener ids that say more than the words proxydiag knows
        self.seen: set[str] = set()

    def learn_paths(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path not in STANDARD_STREAMS:
                self.pseudonyms.path(path)

    def learn(self, key: str, value: JsonValue) -> None:
        """A document's `key` and its value (for connections, one of them)."""
        if key in ("inputs", "proxy_configs", "stalwart_config", "log_inputs"):
            for path in _paths({key: value}):
                self.pseudonyms.path(path)
        if key == "stalwart_config":
            self.listeners.update(identifier for identifier in listener_ids(value)
                                  if self.pseudonyms.text(identifier) != identifier)
        if key not in WIRE_KEYS:
            return
        self.names.update(names_in_certificates(value))
        if key == "targets":  # the probe's targets, as the user named them: single-label names too
            self.hostnames.update(target_hosts(value))
        texts = [text for text in dict.fromkeys(_strings(value)) if text not in self.seen]
        from_the_value = len(texts)
        if len(self.seen) > self.SEEN_TEXTS:
            self.seen.clear()
        self.seen.update(texts)
        blobs = [bytes.fromhex(match) for text in texts if len(text) >= 12 for match in HEX_BLOB.findall(text)]
        for blob in blobs:  # addresses and ids a header in evidence holds, parsed or not
            header = proxy_protocol.parse(blob).header
            texts += [addr for addr in (header.src_addr, header.dst_addr) if addr] if header else []
            texts.append(blob.decode("latin-1"))
            for begin, end in opaque_tlv_spans(blob):
                self.pseudonyms.blob(blob[begin:end])
        originals = self.pseudonyms.originals
        for text in texts:
            if "." in text:
                originals.update(str(ip) for ip in map(ip_of, IPV4.findall(text)) if ip)
            if text.count(":") >= 2:
                originals.update(str(ip) for ip in map(_ipv6_of, IPV6.findall(text)) if ip)
        own = set(_own_texts(value))
        self.hostnames |= hostnames_in([text for text in texts[:from_the_value] if text not in own]
                                     + texts[from_the_value:])
        for tlv in tlv_dicts(value):
            opaque_value(tlv["value"], self.pseudonyms)

    def rewriter(self) -> _Rewriter:
        return _Rewriter(self.pseudonyms, self.hostnames, self.names, self.listeners)


class _Rewriter:
    def __init__(self, pseudonyms: Pseudonyms, hostnames: set[str], certificate_names: Iterable[str] = (),
                 listener_ids: Iterable[str] = ()) -> None:
        self.pseudonyms = pseudonyms
        self.names = _words(certificate_names)
        # a listener's id is told as its finding's sentence tells it (through the allowlist)
        self.listeners = _words(listener_ids, r"[\w-]")
        names = sorted(hostnames, key=len, reverse=True)
        self.hostname = (
            re.compile(HOST_AFTER + "(" + "|".join(map(re.escape, names)) + r")(?![\w-])", re.I)
            if names else None
        )
        paths = sorted(pseudonyms.paths, key=len, reverse=True)
        self.paths = re.compile("|".join(map(re.escape, paths))) if paths else None

        self.done: dict[str, str] = {}
        self.wired: dict[str, str] = {}
        for name in sorted(hostnames, key=str.lower):  # numbered now: wire text names them as prose does
            pseudonyms.hostname(name)

    REMEMBERED = 65_536  # rewritten texts kept for repeats (a stream of connections has no end)

    def quotes_a_file(self, text: str) -> bool:
        """Whether `text` quotes a line of a file the command read (`haproxy.cfg:5: server ...`)."""
        quoted = FILE_LINE.match(text)
        return quoted is not None and quoted.group(1) in self.pseudonyms.paths

    def own(self, text: str) -> str:
        """proxydiag's own text (a fix): as any text, but for the user's lines a diff quotes
        (`-    server mailhub ...`, and the unchanged line an insertion follows), which go
        through the allowlist."""
        if "```diff" not in text:
            return self(text)
        lines, in_diff = [], False
        for line in text.split("\n"):
            in_diff = line.startswith("```diff") or (in_diff and not line.startswith("```"))
            quoted = in_diff and line[:1] in ("-", "+", " ") and not line.startswith(("---", "+++"))
            lines.append(line[0] + self.pseudonyms.text(line[1:]) if quoted else self(line))
        return "\n".join(lines)

    def wire(self, text: str) -> str:
        """Quoted wire, log or certificate text: its prefix (a file and line, a probe's
        time) as any text, a certificate's names as elsewhere, the rest through the allowlist."""
        done = self.wired.get(text)
        if done is None:
            if len(self.wired) >= self.REMEMBERED:
                self.wired.clear()
            prefix = QUOTE_PREFIX.match(text)
            start = prefix.end() if prefix else 0
            quoted = self.names.sub(lambda m: self.pseudonyms.name(m.group()), text[start:]) if self.names else text[start:]
            done = self.wired[text] = self(text[:start]) + self.pseudonyms.text(quoted)
        return done

    def __call__(self, text: str) -> str:
        done = self.done.get(text)
        if done is None:
            if len(self.done) >= self.REMEMBERED:
                self.done.clear()
            done = self.done[text] = self._rewrite(text)
        return done

    def _rewrite(self, text: str) -> str:
        if self.paths is not None:
            text = self.paths.sub(lambda m: self.pseudonyms.paths[m.group()], text)
        text = HEX_BLOB.sub(lambda m: self._hex(m.group(), text.startswith("...", m.end())), text) if len(text) >= 12 else text
        text = self._text(text)
        return CUT_TOKEN.sub("[cut]", text) if text.endswith("...") and not HEX_BEFORE_CUT.search(text) else text

    def _text(self, text: str) -> str:
        if self.names is not None:
            text = self.names.sub(lambda m: self.pseudonyms.name(m.group()), text)
        if self.listeners is not None:
            text = self.listeners.sub(lambda m: self.pseudonyms.text(m.group()), text)
        if "." in text:
            text = IPV4.sub(lambda m: self.pseudonyms.address(m.group()), text)
        if text.count(":") >= 2:
            text = IPV6.sub(lambda m: self._ipv6(m.group()), text)
        if self.hostname is not None:
            text = self.hostname.sub(lambda m: self.pseudonyms.hostname(m.group()), text)
        return text

    def _ipv6(self, token: str) -> str:
        core = token.rstrip(".")  # an address that ends a sentence: the period is not part of it
        ip = _ipv6_of(core)
        if ip is None:
            return token
        port = "" if _is_ip(core) else ":" + core.rpartition(":")[2]
        return self.pseudonyms.address(str(ip)) + port + token[len(core):]

    def _hex(self, blob: str, cut: bool = False) -> str:
        data = bytes.fromhex(blob)
        if proxy_protocol.header_version_at_start(data) == 2:  # each TLV's value where it stands
            data = self._opaque_in_place(data)
        else:
            for value, pseudonym in self.pseudonyms.opaque.items():
                data = data.replace(value, pseudonym)
        for original in list(self.pseudonyms.originals):
            ip = ipaddress.ip_address(original)
            if not (ip.is_unspecified or (ip.version == 6 and ip.is_loopback)):
                data = data.replace(ip.packed, ipaddress.ip_address(self.pseudonyms.address(original)).packed)
        # v1 headers and any text inside: rewritten as text (pseudonyms are ASCII)
        text = self._text(data.decode("latin-1"))
        return (CUT_TEXT.sub("", text) if cut else text).encode("latin-1").hex()


    def _opaque_in_place(self, header: bytes) -> bytes:
        rewritten = bytearray(header)
        for begin, end in opaque_tlv_spans(header):
            rewritten[begin:end] = self.pseudonyms.blob(header[begin:end])
        return bytes(rewritten)


def _words(words: Iterable[str], part: str = r"\w") -> re.Pattern[str] | None:
    """A pattern for any of `words` standing alone (longest first), or None for none."""
    ordered = sorted(words, key=len, reverse=True)
    return re.compile(rf"(?<!{part})(" + "|".join(map(re.escape, ordered)) + rf")(?!{part})") if ordered else None


def listener_ids(config: JsonValue) -> list[str]:
    """The listener ids of a document's `stalwart_config`."""
    listeners = config.get("listeners") if isinstance(config, dict) else None
    return [str(item["id"]) for item in listeners or () if isinstance(item, dict) and isinstance(item.get("id"), str)]


def _ipv6_of(token: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IPv6 address in `token`, which may carry a :port (`fd12::25:10025`) and end a
    sentence (`fd12::25.`)."""
    token = token.rstrip(".")
    if _is_ip(token):
        ip = ipaddress.ip_address(token)
        return ip if ip.version == 6 else None
    head, _, port = token.rpartition(":")
    if port.isdigit() and _is_ip(head) and ipaddress.ip_address(head).version == 6:
        return ipaddress.ip_address(head)
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


STANDARD_STREAMS = frozenset({"-", "<stdin>", "live"})  # names no one's files


def _paths(document: JsonDict) -> list[str]:
    found = [item["path"] for key in ("inputs", "log_inputs") for item in document.get(key) or [] if item.get("path")]
    found += [config["path"] for config in document.get("proxy_configs") or [] if config.get("path")]
    config = document.get("stalwart_config") or {}
    found += [config["path"]] if config.get("path") else []
    return [path for path in found if path not in STANDARD_STREAMS]


def _own_texts(value: JsonValue) -> Iterator[str]:
    """The texts proxydiag wrote itself (under OWN_TEXT_KEYS) inside `value`."""
    return texts_under(value, OWN_TEXT_KEYS)


def _strings(value: JsonValue) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# The document's own keys (`command`, `src_addr`): never rewritten, even where a server
# named itself so (`250-command`) and the word became a host name to hide. Keys that hold
# data (an address, an endpoint, a host name) have a dot or a colon.
_SCHEMA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _transform(value: JsonValue, rewrite: _Rewriter, key: str | None = None) -> JsonValue:
    if isinstance(value, str):
        if key in OWN_TEXT_KEYS:
            return rewrite.own(value)
        return rewrite.wire(value) if key in WIRE_TEXT_KEYS or rewrite.quotes_a_file(value) else rewrite(value)
    if isinstance(value, dict):  # keys too: counts per address are keyed by the address
        if is_opaque_tlv(value):
            value = {**value, "value": opaque_value(value["value"], rewrite.pseudonyms)}
        return {(rewrite(name) if isinstance(name, str) and not _SCHEMA_KEY.fullmatch(name) else name):
                _transform_item(value, name, item, rewrite) for name, item in value.items()}
    if isinstance(value, list):
        return [_transform(item, rewrite, key) for item in value]
    return value


def _transform_findings(findings: JsonValue, rewrite: _Rewriter, typed: Typed = (),
                        told: list[Finding] | None = None) -> JsonValue:
    """The document's findings, each one of `typed` (the same findings, in its order) told
    by `anonymized_finding` (and added to `told`), with what the document adds to it (its
    fix when the finding has none, a listener, ladder legs); without them, every finding
    rewritten as text."""
    if not isinstance(findings, list) or len(typed) != len(findings) or not all(isinstance(item, dict) for item in findings):
        return _transform(findings, rewrite)
    shown: list[JsonValue] = []
    for item, finding in zip(findings, typed, strict=True):
        assert isinstance(item, dict)
        fix = item.get("fix")
        finding = finding if finding.fix is not None or not isinstance(fix, str) else replace(finding, fix=fix)
        own = finding.to_dict()
        told_one, added = anonymized_finding(finding, rewrite, {key: value for key, value in item.items() if key not in own})
        if told is not None:
            told.append(told_one)
        both = {**told_one.to_dict(), **added}
        both = {**told_one.to_dict(), **added}
        shown.append({key: both[key] for key in item})
    return shown


def anonymized_finding(finding: Finding, rewrite: _Rewriter, added: JsonDict | None = None) -> tuple[Finding, JsonDict]:
    """The finding holding no original: a typed message told through the pseudonyms (its
    sentence never held the originals), a sentence rewritten as text, the evidence and the
    fix rewritten as the document's text; and `added` (what a view adds) rewritten. In the
    order the pseudonyms have always been numbered in: a sentence first, a typed message last."""
    message = _transform(finding.message, rewrite, "message") if finding.said is None else None
    evidence = _transform(finding.evidence, rewrite, "evidence")
    fix = rewrite.own(finding.fix) if finding.fix is not None else None
    rest = _transform(added or {}, rewrite)
    assert isinstance(evidence, dict) and isinstance(rest, dict)
    if finding.said is not None:
        message = finding.said.message(rewrite.pseudonyms)
    assert isinstance(message, str)
    return replace(finding, message=message, evidence=evidence, fix=fix, said=None), rest


def _transform_item(parent: JsonDict, key: str, item: JsonValue, rewrite: _Rewriter) -> JsonValue:
    """One value of a dict: an SMTP greeting given without its code (`opening.greeting`)
    names its host first, as the whole reply does."""
    code = parent.get("greeting_code")
    if key == "greeting" and isinstance(item, str) and isinstance(code, str) and code.isdigit():
        return rewrite.wire(f"{code} {item}")[len(code) + 1:]
    if key == "evidence" and isinstance(item, str) and "certain" in parent:  # the software's own words
        return rewrite.wire(item)
    return _transform(item, rewrite, key)
