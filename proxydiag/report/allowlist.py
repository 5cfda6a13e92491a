"""Wire, log and certificate text under `--anonymize`: split into tokens, of which only
those proxydiag knows survive (reply codes, protocol keywords and capabilities, the
software it recognises, Stalwart's event names and log keys, punctuation, numbers that
are not addresses). Every other token becomes a stable pseudonym: an address one of its
family and kind, a host name a host pseudonym, any other word a neutral one. An
allowlist, not a hunt for what looks like a name: a word nobody listed is hidden."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from functools import cache
from typing import Protocol

from proxydiag.logs.stalwart import EVENT_BY_DESCRIPTION, KNOWN_KEYS
from proxydiag.parsers.protocols.software import SIGNATURES

_SMTP = """HELO EHLO LHLO MAIL FROM RCPT TO DATA BDAT QUIT RSET NOOP VRFY EXPN HELP STARTTLS AUTH ESMTP SMTP LMTP
ESMTPS ESMTPA ESMTPSA PIPELINING SIZE ETRN ENHANCEDSTATUSCODES 8BITMIME DSN SMTPUTF8 CHUNKING BINARYMIME DELIVERBY
REQUIRETLS MT-PRIORITY FUTURERELEASE XCLIENT XFORWARD TURN ATRN BURL LIMITS RRVS ORCPT RET ENVID NOTIFY BODY SMTPS
SUBMISSION SUBMISSIONS"""
_SASL = """PLAIN LOGIN CRAM-MD5 DIGEST-MD5 SCRAM-SHA-1 SCRAM-SHA-256 SCRAM-SHA-1-PLUS SCRAM-SHA-256-PLUS XOAUTH2
OAUTHBEARER GSSAPI NTLM EXTERNAL ANONYMOUS"""
_IMAP = """OK NO BAD BYE PREAUTH CAPABILITY IMAP IMAP4 IMAP4REV1 IMAP4REV2 IMAPS LOGOUT AUTHENTICATE SELECT EXAMINE
ID ENABLE IDLE NAMESPACE UNSELECT CHILDREN SORT THREAD REFERENCES ORDEREDSUBJECT LITERAL+ LITERAL- SASL-IR
LOGIN-REFERRALS LOGINDISABLED UIDPLUS ESEARCH ESORT SEARCHRES WITHIN CONTEXT LIST-EXTENDED LIST-STATUS MOVE SNIPPET
PREVIEW SPECIAL-USE BINARY CATENATE CONDSTORE QRESYNC UTF8 ACCEPT APPENDLIMIT QUOTA ACL RIGHTS METADATA
METADATA-SERVER FILTERS COMPRESS DEFLATE MULTIAPPEND URLAUTH URL-PARTIAL I18NLEVEL SEARCH SAVEDATE OBJECTID STATUS
ALERT PARSE PERMANENTFLAGS READ-ONLY READ-WRITE TRYCREATE UIDNEXT UIDVALIDITY UNSEEN AUTHENTICATIONFAILED UNAVAILABLE
SERVERBUG CLIENTBUG CANNOT LIMIT CONTACTADMIN EXPIRED PRIVACYREQUIRED INUSE DISPLAY"""
_POP3 = """+OK -ERR USER PASS APOP STLS CAPA TOP UIDL RESP-CODES AUTH-RESP-CODE EXPIRE LOGIN-DELAY SASL STAT LIST RETR
DELE LAST POP3 POP3S"""
_SIEVE = """MANAGESIEVE IMPLEMENTATION SIEVE VERSION MAXREDIRECTS OWNER LANGUAGE UNAUTHENTICATE CHECKSCRIPT HAVESPACE
PUTSCRIPT LISTSCRIPTS SETACTIVE GETSCRIPT DELETESCRIPT RENAMESCRIPT"""
_HTTP = """GET POST HEAD PUT DELETE OPTIONS PATCH CONNECT TRACE HTTP HTTPS HTTP/1.0 HTTP/1.1 HTTP/2 HOST CONTENT-TYPE
CONTENT-LENGTH SERVER CONNECTION CLOSE KEEP-ALIVE TRANSFER-ENCODING CHUNKED LOCATION UPGRADE USER-AGENT
X-FORWARDED-FOR X-REAL-IP FORWARDED"""
_TLS = """TLS SSL TLSV1 TLSV1.0 TLSV1.1 TLSV1.2 TLSV1.3 CLIENTHELLO SERVERHELLO HANDSHAKE CERTIFICATE CN O OU L ST C
DC EMAILADDRESS"""
_PROXY = "PROXY TCP4 TCP6 UNKNOWN LOCAL UNSPEC V1 V2 TLV CRC32C"
_LOG = "TRACE DEBUG INFO WARN WARNING ERROR NOTICE CRIT FATAL"
# Words the replies of the servers proxydiag recognises are made of (their default texts).
_REPLIES = """READY SERVICE ERROR COMMAND COMMANDS SYNTAX UNRECOGNIZED UNRECOGNISED RECOGNIZED CLOSING CHANNEL
TRANSMISSION AUTHENTICATION SUCCESSFUL SUCCEEDED FAILED FAILURE TOO MANY INVALID RECEIVED BY NOT AVAILABLE
TEMPORARILY START GO AHEAD IN LOGGED WELCOME HELLO THERE PLEASE TRY AGAIN LATER MUST ISSUE A AN THE FIRST OF WITH
AND OR FOR ON AT IS ARE BE SEQUENCE LINE LONG TIMEOUT TIMED OUT EXCEEDED REQUIRED REFUSED DENIED ACCESS RELAY
PERMITTED REJECTED SENDER RECIPIENT MAILBOX ADDRESS PROTOCOL VIOLATION ENCRYPTION HEADER EXPECTED MISSING PROBLEM
SHUTTING DOWN SEND END ENTER MESSAGE QUEUED QUEUE AS BEGIN YOUR YOU HAD ME AT DISALLOWED NON-SECURE CONNECTIONS
PLAINTEXT PRE-LOGIN POST-LOGIN CAPABILITIES LISTED HAVE MORE STREAM OF UNKNOWN BAD WRONG VERSION NUMBER SERVER
CLIENT SECURE SECURED ALREADY ACTIVE AUTHENTICATE YET BYE DISCONNECTING LOCAL TEMPORARY PERMANENT"""

# The directives and keys of the configurations proxydiag reads (configs/: HAProxy, nginx,
# stunnel, Traefik, Caddy, Envoy, Kubernetes, compose, Stalwart's proxy), and their values.
_CONFIG = """frontend backend listen defaults global bind server server-template default-server default_backend
use_backend mode tcp http option timeout balance roundrobin leastconn maxconn check inter rise fall port addr weight
send-proxy send-proxy-v2 send-proxy-v2-ssl send-proxy-v2-ssl-cn no-send-proxy no-send-proxy-v2 accept-proxy
expect-proxy check-send-proxy proxy-v2-options set-proxy-v2-tlv-fmt unique-id authority crc32c ssl verify none
required optional crt ca-file crl-file sni alpn ciphers ciphersuites ssl-min-ver ssl-max-ver verifyhost no-ssl
no-check tcp-request inspect-delay content accept reject log source usesrc if unless acl stream mail upstream
location proxy_pass proxy_protocol proxy_ssl proxy_bind ssl_preread ssl_certificate ssl_certificate_key
set_real_ip_from real_ip_header real_ip_recursive starttls xclient auth_http resolver on off yes no true false
client connect cert key protocol entryPoints entrypoints address proxyProtocol trustedIPs insecure version
loadBalancer servers serversTransport routers services rule tls passthrough labels traefik caddy layer4
reverse_proxy dial listener_filters filter_chains typed_config envoy cluster clusters socket_address port_value
annotations metadata spec ports targetPort service kind apiVersion image expose published target
trusted-networks override"""

# Proxies and mail servers proxydiag names (the recognisers and the configuration readers).
# Words proxydiag writes itself around a quoted line (crosscheck's "listener 'smtp', trusted networks ...").
_OWN = "listener listeners trusted networks"
_SOFTWARE = "HAProxy nginx Traefik Caddy Envoy stunnel Stalwart Pigeonhole Debian Ubuntu Murder Microsoft Exchange"

# A reply code (`220`, `250-`, `5.7.1`), a number, a version, a date or a time: never
# four dotted parts (an address); numbers joined otherwise (`10/20`) are split first.
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+){0,2}%?"
                    r"|\d{4}-\d\d-\d\d(?:T[\d:.]+(?:Z|[+-]\d\d:?\d\d)?)?|\d{1,2}:\d\d(?::\d\d(?:\.\d+)?)?")
ESCAPE = re.compile(r"\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\[rnt\\\"']")
# Tokens: runs of word characters and the punctuation inside names, addresses and
# keywords; everything between them (spaces, quotes, brackets, commas) is kept as it is.
TOKEN = re.compile(r"(?:[\w.:@%+/=-]|" + ESCAPE.pattern + r")+")
EDGES = ".:-/+=@%"
DNS_NAME = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z][A-Za-z0-9-]{0,62}")
REPLY_START = re.compile(r"(\d{3})([ -])")  # a mail reply's code: the host an SMTP greeting names follows it
REPLY_CODES = re.compile(r"(?:\d{3}-)+")  # before a capability (`250-PIPELINING`)
SEPARATED = re.compile(r"([/=@]|" + ESCAPE.pattern + r")")


class Pseudonymise(Protocol):
    def address(self, address: str) -> str: ...
    def host(self, name: str) -> str: ...
    def word(self, word: str) -> str: ...
    def known_host(self, name: str) -> bool: ...
    def is_pseudonym(self, token: str) -> bool: ...
    def known_path(self, path: str) -> str | None: ...


@cache
def known_words() -> frozenset[str]:
    """Every token proxydiag knows, upper case."""
    words = " ".join((_SMTP, _SASL, _IMAP, _POP3, _SIEVE, _HTTP, _TLS, _PROXY, _LOG, _REPLIES, _CONFIG,
                      _OWN, _SOFTWARE)).split()
    words += [signature.name for signature in SIGNATURES]
    words += [part for signature in SIGNATURES for part in signature.name.split()]
    words += [*EVENT_BY_DESCRIPTION.values(), *KNOWN_KEYS]
    words += [word for description in EVENT_BY_DESCRIPTION for word in description.split()]
    return frozenset(word.upper() for word in words)


def is_known(token: str) -> bool:
    return token.upper() in known_words() or bool(NUMBER.fullmatch(token)) or bool(ESCAPE.fullmatch(token)) \
        or not any(character.isalnum() for character in token)


def allowed_text(text: str, names: Pseudonymise) -> str:
    """`text` with every token proxydiag does not know replaced by its pseudonym; the first
    word of a 220 or 250 reply (not of its continuation lines) is a host name, whatever it
    looks like."""
    pieces = []
    at = 0
    continued = None  # the code of the line before, when it announced more (`250-`)
    for line_start in _line_starts(text):
        if line_start < at:
            continue
        pieces.append(_tokens(text[at:line_start], names))
        at = line_start
        reply = REPLY_START.match(text, at)
        if reply and reply.group(1) in ("220", "250") and reply.group(1) != continued:
            pieces.append(reply.group())
            at = reply.end()
            named = TOKEN.match(text, at)
            if named and not is_known(named.group()):
                pieces.append(_host_token(named.group(), names, host=True))
                at = named.end()
        continued = reply.group(1) if reply and reply.group(2) == "-" else None
    pieces.append(_tokens(text[at:], names))
    return "".join(pieces)


def _line_starts(text: str) -> Iterator[int]:
    """Where each line starts, after a raw or escaped line break."""
    yield 0
    for match in re.finditer(r"\n|\\n|\\x0a", text):
        yield match.end()


def _tokens(text: str, names: Pseudonymise) -> str:
    return TOKEN.sub(lambda match: token(match.group(), names), text)


def token(word: str, names: Pseudonymise) -> str:
    """One token as `--anonymize` shows it (no recursion: a token may be thousands of
    escapes or reply codes long)."""
    kept = _kept(word, names) or _given_path(word, names)
    if kept is not None:
        return kept
    codes = REPLY_CODES.match(word)  # 250-PIPELINING
    start = codes.end() if codes and codes.end() < len(word) else 0
    body = word[start:]
    core = body.strip(EDGES) or body
    before = body.index(core)
    shown = "".join(part if index % 2 else _leaf(part, names)
                    for index, part in enumerate(SEPARATED.split(core)))  # HTTP/1.1, SORT=DISPLAY, user@host, \x00
    return word[:start] + body[:before] + shown + body[before + len(core):]


def _given_path(word: str, names: Pseudonymise) -> str | None:
    """`word` naming a file the command was given (`(/etc/haproxy/haproxy.cfg:12)`), with
    the file's pseudonym, its line and column kept; None for any other word."""
    start = len(word) - len(word.lstrip("(["))
    path = word[start:len(word.rstrip(")],;"))]
    for _ in range(3):  # the file, then file:line, then file:line:column
        shown = names.known_path(path)
        if shown is not None:
            return word[:start] + shown + word[start + len(path):]
        head, colon, line = path.rpartition(":")
        if not (colon and line.isdigit()):
            return None
        path = head
    return None


def _kept(word: str, names: Pseudonymise) -> str | None:
    """`word` as shown when it is an address (pseudonymised) or a token proxydiag knows."""
    address = _address(word, names)  # first: an address is made of numbers
    if address is not None:
        return address
    return word if is_known(word) or names.is_pseudonym(word) else None


def _leaf(word: str, names: Pseudonymise) -> str:
    """A token with no separator or escape left in it."""
    kept = _kept(word, names)
    if kept is not None:
        return kept
    core = word.strip(EDGES)
    if not core:
        return word
    before = word.index(core)
    return word[:before] + (_kept(core, names) or _host_token(core, names)) + word[before + len(core):]


def _host_token(word: str, names: Pseudonymise, host: bool = False) -> str:
    """A word nobody listed: a host name if it looks like one, is one already, or stands
    where a protocol names a host (`host`); any other word a neutral pseudonym."""
    address = _address(word, names)
    if address is not None:
        return address
    core = word.rstrip(EDGES)
    tail = word[len(core):]
    if not core:
        return word
    if host or DNS_NAME.fullmatch(core) or names.known_host(core):
        return names.host(core) + tail
    return names.word(core) + tail


def _address(word: str, names: Pseudonymise) -> str | None:
    """`word` as an address (`[v6]:port`, `v4:port`, `v6.` and the like) pseudonymised, or None."""
    for core, start in _address_candidates(word):
        ip = ip_of(core)
        if ip is not None:
            return word[:start] + names.address(core) + word[start + len(core):]
    return None


def _address_candidates(word: str) -> Iterator[tuple[str, int]]:
    stripped = word.lstrip("[")
    start = len(word) - len(stripped)
    core = stripped.rstrip(".,;]")
    yield core, start
    if core.count(":") == 1 and "." in core:  # v4:port
        yield core.partition(":")[0], start
    if "]:" in stripped:  # [v6]:port
        yield stripped.partition("]")[0], start
    head, _, port = core.rpartition(":")
    if port.isdigit() and head.count(":") >= 2:  # v6:port without brackets
        yield head, start


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `text` spells, zero-padded IPv4 (010.000.000.001) included."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if len(parts) == 4 and all(part.isdigit() and int(part) <= 255 for part in parts):
        return ipaddress.IPv4Address(".".join(str(int(part)) for part in parts))
    return None
