"""nginx's configuration -> ProxyConfig, parsed by crossplane (nginx's own grammar,
includes followed).

What is read (nginx.org docs: ngx_stream_core_module `listen`, ngx_stream_proxy_module
`proxy_pass`, `proxy_protocol`, `proxy_ssl`, `proxy_bind`; ngx_stream_upstream_module
`upstream`/`server`; ngx_stream_ssl_preread_module `ssl_preread`; ngx_stream_realip_module
`set_real_ip_from`; ngx_mail_core_module `listen` and ngx_mail_proxy_module
`proxy_protocol`; ngx_http_proxy_module `proxy_pass`):
- stream and http `server` blocks: each `listen ADDR:PORT [ssl] [proxy_protocol]` is a
  front listener (`proxy_protocol` there makes nginx *expect* a header from clients),
  `proxy_pass` (an address, or an `upstream` whose `server` lines are followed) a route;
- stream `proxy_protocol on;` sends a v1 header; `proxy_protocol v2;` (nginx 1.31.4
  mainline, src/core/ngx_proxy_protocol.c; stable 1.30 has none of it) sends v2, always
  ending in a CRC32C TLV, and when nginx terminated TLS AUTHORITY, ALPN and the SSL TLV with
  sub-TLVs 0x21-0x25 and the client-certificate bits (no SSL TLV on a plaintext front); http
  `proxy_pass` never sends one;
- stream `proxy_ssl on;` speaks TLS to the server (the v1 line still goes first, in clear);
  in http it is the scheme: `proxy_pass https://...` (ngx_http_proxy_module) speaks TLS to
  the upstream;
- `proxy_bind ADDR` is the source address towards the server; `ssl_preread on;` waits
  for the client's ClientHello before connecting;
- stream `proxy_pass` with variables (ngx_stream_map_module `map`, ngx_stream_proxy_module
  `proxy_pass`): each variable the target of a stream `map` (maps in included files, and
  `include` inside a map, too) stands for every value of that map, the default's too
  (without a `default` the value is empty: a problem); `$server_port` is the listen port,
  and a map whose source is `$server_port` gives only the value for that port. The key
  does not matter for what may be reached (regex `~` keys, `hostnames` masks, `volatile`
  alike), but it says for which connections: a map on `$ssl_preread_server_name` or
  `$ssl_server_name` chooses by SNI. A value may hold variables itself (another map's,
  `$server_port`); any other variable (a regex capture, `$remote_addr`) stays a problem.
  What comes out names an `upstream` (the whole text, no port; nginx compares without
  case) or is `host:port`; without a port nginx refuses it at run time (a problem).
- mail `server` blocks: listeners only (the back end comes from `auth_http` at run time).
Directives given in `stream {}` or `http {}` apply to every server inside.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from proxydiag.configs.citation import shown_line
from proxydiag.configs.includes import MAX_INCLUDED_FILES, IncludeGuard
from proxydiag.configs.model import (
    ConfigReadError,
    FrontListener,
    HeaderVersion,
    Origin,
    Problem,
    ProxyConfig,
    Route,
    VersionFloor,
    split_host_port,
)
from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.userinput import read_text_bounded

V2_SINCE = "1.31.4"  # `proxy_protocol v2;` (stream, mail): src/core/ngx_proxy_protocol.c
CERTIFICATE_DIRECTIVES = ("ssl_certificate", "ssl_certificate_key")
INHERITED = ("proxy_protocol", "proxy_ssl", "proxy_bind", "ssl_preread", "set_real_ip_from")
Directive = dict[str, Any]
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
SNI_VARIABLES = ("$ssl_preread_server_name", "$ssl_server_name")
MAP_PARAMETERS = ("hostnames", "volatile")
MAP_DEPTH = 8  # maps whose values name other maps, at most this deep (and never in a cycle)


def looks_like(text: str) -> bool:
    return bool(re.search(r"(?m)^[ \t]*(events|http|stream|mail|server|upstream|load_module|worker_processes|user)\b[^\n#]*[;{]",
                          text)) and bool(re.search(r"(?m)[;{][ \t\r]*(#.*)?$", text))


def load(path: str) -> ProxyConfig:
    import crossplane  # the runtime dependency that reads nginx's grammar

    if not Path(path).is_file():
        raise ConfigReadError(path, None, "no such file")
    with _bounded_reads(crossplane):
        payload = crossplane.parse(path, catch_errors=True, check_ctx=False, check_args=False, strict=False)
    return from_payload(payload, path, _line_reader())


@contextlib.contextmanager
def _bounded_reads(crossplane) -> Iterator[None]:
    """crossplane opens every file an `include` names itself: while it parses, each is
    checked and read through an IncludeGuard, so `include /dev/zero;`, a FIFO, `/dev/stdin`
    or a glob over thousands of files is an error in the payload (one line, like a missing
    file) instead of a read that never ends. crossplane also opens an explicit include once
    to see that it exists: that open is checked the same way (a FIFO's would block)."""
    lexer, parser = crossplane.lexer, crossplane.parser
    real_io = lexer.io
    guard = IncludeGuard()

    class BoundedIo:
        @staticmethod
        def open(name, *args, **kwargs):
            return io.StringIO(guard.read(name))

    def checked_open(name, *args, **kwargs):
        guard.check(name)
        return open(name, *args, **kwargs)

    lexer.io = BoundedIo
    parser.open = checked_open  # shadows the builtin in crossplane.parser only
    real_glob, parser.glob = parser.glob, BoundedGlob
    try:
        yield
    finally:
        lexer.io, parser.glob = real_io, real_glob
        del parser.open


class BoundedGlob:
    """crossplane's `glob` while it parses: a pattern names at most MAX_INCLUDED_FILES files,
    listed lazily (`include /*/*/*;` stops there instead of listing the whole disk)."""

    has_magic = staticmethod(glob.has_magic)

    @staticmethod
    def glob(pattern: str) -> list[str]:
        names = list(itertools.islice(glob.iglob(pattern), MAX_INCLUDED_FILES + 1))
        if len(names) > MAX_INCLUDED_FILES:
            raise OSError(errno.EMFILE, f"include {pattern}: names more than {MAX_INCLUDED_FILES} files")
        return names


def _line_reader() -> Callable[[str, int], str]:
    cache: dict[str, list[str]] = {}

    def line_of(path: str, number: int) -> str:
        if path not in cache:
            try:
                cache[path] = read_text_bounded(path).splitlines()
            except OSError:
                cache[path] = []
        lines = cache[path]
        return lines[number - 1] if 0 < number <= len(lines) else ""

    return line_of


@dataclass(frozen=True)
class _Scope:
    """Directives in force, with where each was set."""

    values: tuple[tuple[str, tuple[str, ...], Origin], ...] = ()

    def with_directives(self, directives: list[tuple[Directive, Origin]]) -> _Scope:
        values = list(self.values)
        for directive, origin in directives:
            name = directive["directive"]
            if name in INHERITED:
                if name != "set_real_ip_from":
                    values = [value for value in values if value[0] != name]
                values.append((name, tuple(directive.get("args", [])), origin))
        return replace(self, values=tuple(values))

    def get(self, name: str) -> tuple[tuple[str, ...], Origin] | None:
        found = [(args, origin) for key, args, origin in self.values if key == name]
        return found[-1] if found else None

    def all(self, name: str) -> list[str]:
        return [arg for key, args, _ in self.values if key == name for arg in args]


@dataclass(frozen=True)
class _Map:
    """A stream `map SOURCE $target { KEY VALUE; ... }`, entries as written (default included)."""

    source: str
    entries: tuple[tuple[str, str, Origin], ...]
    origin: Origin

    def for_port(self, port: int) -> tuple[tuple[str, str, Origin], ...]:
        """The entries a connection to `port` may take."""
        if self.source != "$server_port" or any(key.startswith("~") for key, _, _ in self.entries):
            return self.entries
        exact = tuple(entry for entry in self.entries if entry[0] == str(port))
        return exact or tuple(entry for entry in self.entries if entry[0] == "default")

    def condition(self, key: str) -> str:
        if self.source in SNI_VARIABLES:
            return "SNI other than the map's names (default)" if key == "default" else f"SNI {key}"
        return f"{self.source} {key}"


@dataclass(frozen=True)
class _Target:
    """A server a proxy_pass may reach, where its address is written, and the map entries
    that choose it (outermost first)."""

    address: str
    port: int | None
    origin: Origin
    choices: tuple[tuple[_Map, str, Origin], ...] = ()
    tls: bool = False  # http `proxy_pass https://`


_Expansion = tuple[str, tuple[tuple[_Map, str, Origin], ...]]


def from_payload(payload: JsonDict, path: str, line_of: Callable[[str, int], str]) -> ProxyConfig:
    """crossplane's parse result -> ProxyConfig (pure but for `line_of`, which gives a
    line's text for the citations)."""
    errors = payload.get("errors") or []
    if errors:
        first = errors[0]
        message = str(first.get("error") or "the file ends inside a directive: not nginx's syntax")
        message = re.sub(r"(?<!\s)\s+in\s+\S+:\d+$", "", message)
        message = re.sub(r"^\[Errno \d+\] No such file or directory: '(.*)'$", r"include \1: no such file", message)
        message = re.sub(r"^\[Errno \d+\] ", "", message)
        raise ConfigReadError(first.get("file") or path, first.get("line"), shown_line(message))  # it quotes tokens
    configs = payload.get("config") or []
    if not configs:
        raise ConfigReadError(path, None, "nothing parsed")
    reader = _Reader(configs, line_of)
    top = list(reader.directives(0, configs[0].get("parsed", [])))
    if not any(d["directive"] in ("stream", "http", "mail", "events", "server") for d, _ in top):
        raise ConfigReadError(path, None, "no stream, http, mail or events block: not an nginx configuration")
    listeners: list[FrontListener] = []
    routes: list[Route] = []
    problems: list[Problem] = []
    for directive, origin in top:
        if directive["directive"] in ("stream", "http", "mail"):
            reader.context(directive, origin, listeners, routes, problems)
    return ProxyConfig("nginx", path, tuple(listeners), tuple(routes), tuple(problems), reader.version_floor(top))


class _Reader:
    def __init__(self, configs: list[JsonDict], line_of: Callable[[str, int], str]) -> None:
        self.configs = configs
        self.line_of = line_of

    def directives(self, file_index: int, block: list[Directive],
                   within: tuple[int, ...] = ()) -> Iterator[tuple[Directive, Origin]]:
        """The block's directives with includes expanded in place, each with its origin;
        `within`: the files whose includes led here (a file met again is a loop)."""
        file = self.configs[file_index]["file"]
        within = (*within, file_index)
        for directive in block:
            if directive["directive"] == "include" and "includes" in directive:
                for index in directive["includes"]:
                    if index in within:
                        raise ConfigReadError(file, directive.get("line"),
                                              f"include loop: {self.configs[index]['file']} includes itself")
                    if len(within) >= MAX_INCLUDED_FILES:
                        raise ConfigReadError(file, directive.get("line"),
                                              f"includes nested more than {MAX_INCLUDED_FILES} files deep")
                    yield from self.directives(index, self.configs[index].get("parsed", []), within)
                continue
            line = directive.get("line", 0)
            yield directive, Origin(file, line, self.line_of(file, line))

    def version_floor(self, block: list[tuple[Directive, Origin]]) -> VersionFloor | None:
        """nginx 1.31.4 or later where the configuration already uses `proxy_protocol v2;` (an
        older nginx refuses the value): its fixes may use it too."""
        for directive, origin in block:
            if directive["directive"] == "proxy_protocol" and directive.get("args") == ["v2"]:
                return VersionFloor(V2_SINCE, origin)
            if directive.get("block"):
                found = self.version_floor(self.children(directive, origin))
                if found is not None:
                    return found
        return None

    def children(self, directive: Directive, origin: Origin) -> list[tuple[Directive, Origin]]:
        index = next((i for i, config in enumerate(self.configs) if config["file"] == origin.path), 0)
        return list(self.directives(index, directive.get("block") or []))

    def context(self, block: Directive, origin: Origin, listeners: list[FrontListener], routes: list[Route],
                problems: list[Problem]) -> None:
        kind = block["directive"]
        inner = self.children(block, origin)
        scope = _Scope().with_directives(inner)
        upstreams = {d["args"][0]: (d, o) for d, o in inner if d["directive"] == "upstream" and d.get("args")}
        maps = self.maps(inner, problems) if kind == "stream" else {}
        for directive, server_origin in inner:
            if directive["directive"] != "server":
                continue
            body = self.children(directive, server_origin)
            server_scope = scope.with_directives(body)
            fronts = self.listen(body, kind, server_scope)
            listeners.extend(fronts)
            if kind == "mail":
                _add_unjudged_mail_header(server_scope, problems)
                continue
            for pass_directive, pass_origin in self.proxy_passes(body):
                for front in fronts:
                    targets = self.targets(pass_directive, pass_origin, upstreams, kind, problems, front, maps)
                    routes.extend(self.route(front, target, pass_origin, server_scope, kind) for target in targets)

    def maps(self, inner: list[tuple[Directive, Origin]], problems: list[Problem]) -> dict[str, _Map]:
        """The stream block's maps by the variable they set (without the `$`)."""
        found = {}
        for directive, origin in inner:
            args = directive.get("args") or []
            if directive["directive"] != "map" or len(args) != 2 or not args[1].startswith("$"):
                continue
            entries = tuple((entry["directive"], entry["args"][0], entry_origin)
                            for entry, entry_origin in self.children(directive, origin)
                            if entry["directive"] not in MAP_PARAMETERS and len(entry.get("args") or []) == 1)
            if not any(key == "default" for key, _, _ in entries):
                entries += (("default", "", origin),)
            found[args[1][1:]] = _Map(args[0], entries, origin)
        return found

    def listen(self, body: list[tuple[Directive, Origin]], kind: str, scope: _Scope) -> list[FrontListener]:
        fronts = []
        trusted = tuple(scope.all("set_real_ip_from"))
        for directive, origin in body:
            if directive["directive"] != "listen" or not directive.get("args"):
                continue
            spec, *options = directive["args"]
            if spec.startswith("unix:"):
                continue
            parsed = split_host_port(spec)
            if parsed is None or parsed[1] is None:
                raise ConfigReadError(origin.path, origin.line, f"listen {spec}: no valid port")
            fronts.append(FrontListener(parsed[0], parsed[1], "ssl" in options, "proxy_protocol" in options, origin,
                                        trusted if "proxy_protocol" in options else ()))
        terminating = [front for front in fronts if front.tls_terminated]
        if len(terminating) != 1:
            return fronts  # certificates another listener of the block needs stay
        certificates = tuple(origin for directive, origin in body if directive["directive"] in CERTIFICATE_DIRECTIVES)
        return [replace(front, certificate_origins=certificates) if front.tls_terminated else front for front in fronts]

    def proxy_passes(self, body: list[tuple[Directive, Origin]]) -> Iterator[tuple[Directive, Origin]]:
        for directive, origin in body:
            if directive["directive"] == "proxy_pass" and directive.get("args"):
                yield directive, origin
            elif directive["directive"] == "location":
                yield from self.proxy_passes(self.children(directive, origin))

    def targets(self, directive: Directive, origin: Origin, upstreams: JsonDict, kind: str, problems: list[Problem],
                front: FrontListener, maps: dict[str, _Map]) -> list[_Target]:
        target = directive["args"][0]
        default_port = None
        if kind == "http":
            scheme, _, target = target.partition("://")
            target = target.split("/", 1)[0].rpartition("@")[2]  # a user:password@ before the host is never shown
            default_port = 443 if scheme.lower() == "https" else 80
            if "$" not in target:
                return [replace(found, tls=scheme.lower() == "https")
                        for found in self.servers(target, origin, (), upstreams, default_port, problems)]
        if "$" not in target:
            return self.servers(target, origin, (), upstreams, default_port, problems)
        if kind != "stream":
            _add(problems, Problem(f"proxy_pass {target}: chosen at run time, not followed", origin))
            return []
        found = []
        for text, choices in self.expand(target, origin, front, maps, problems, ()):
            written = choices[-1][2] if choices else origin
            no_port = split_host_port(text)
            if no_port is not None and no_port[1] is None and text.lower() not in {name.lower() for name in upstreams}:
                _add(problems, Problem(f"proxy_pass {target}: {text!r} has no port and names no upstream: nginx "
                                       "refuses it at run time (no port in upstream)", written))
                continue
            name = next((name for name in upstreams if name.lower() == text.lower()), text)
            found.extend(self.servers(name, written, choices, upstreams, None, problems))
        return found

    def expand(self, text: str, origin: Origin, front: FrontListener, maps: dict[str, _Map], problems: list[Problem],
               seen: tuple[str, ...]) -> list[_Expansion]:
        """Every text `text` (written at `origin`) may become, with the map entries chosen on the way."""
        results: list[_Expansion] = [("", ())]
        position = 0
        for match in VARIABLE.finditer(text):
            options = self.variable(match.group(1) or match.group(2), text, origin, front, maps, problems, seen)
            literal = text[position : match.start()]
            results = [(done + literal + value, chosen + more) for done, chosen in results for value, more in options]
            position = match.end()
        return [(done + text[position:], chosen) for done, chosen in results]

    def variable(self, name: str, text: str, origin: Origin, front: FrontListener, maps: dict[str, _Map],
                 problems: list[Problem], seen: tuple[str, ...]) -> list[_Expansion]:
        if name == "server_port":
            return [(str(front.port), ())]
        chosen = maps.get(name)
        if chosen is None or name in seen or len(seen) >= MAP_DEPTH:
            _add(problems, Problem(f"proxy_pass {text}: ${name} is chosen at run time, not followed", origin))
            return []
        entries = chosen.for_port(front.port)
        if any(not written for _, written, _ in entries):
            _add(problems, Problem(f"proxy_pass {text}: ${name} is empty for {chosen.condition('default')} (the map has "
                                   "no default): nginx cannot connect those", chosen.origin))
        return [(value, ((chosen, key, entry_origin), *more))
                for key, written, entry_origin in entries if written
                for value, more in self.expand(written, entry_origin, front, maps, problems, (*seen, name))]

    def servers(self, target: str, origin: Origin, choices: tuple[tuple[_Map, str, Origin], ...], upstreams: JsonDict,
                default_port: int | None, problems: list[Problem]) -> list[_Target]:
        """The servers `target` names: an upstream's `server` lines, or the address itself."""
        if target in upstreams:
            upstream, upstream_origin = upstreams[target]
            found = []
            for server, server_origin in self.children(upstream, upstream_origin):
                if server["directive"] == "server" and server.get("args"):
                    parsed = split_host_port(server["args"][0])
                    if parsed is not None:
                        found.append(_Target(parsed[0], parsed[1] or default_port, server_origin, choices))
            return found
        parsed = split_host_port(target)
        if parsed is None or target.startswith("unix:"):
            _add(problems, Problem(f"proxy_pass {target}: not a TCP address", origin))
            return []
        return [_Target(parsed[0], parsed[1] or default_port, origin, choices)]

    def route(self, front: FrontListener, target: _Target, pass_origin: Origin, scope: _Scope, kind: str) -> Route:
        header = scope.get("proxy_protocol") if kind == "stream" else None
        sends: HeaderVersion = "none"
        if header is not None and header[0][:1] == ("on",):
            sends = "v1"
        elif header is not None and header[0][:1] == ("v2",):
            sends = "v2"
        tls = scope.get("proxy_ssl")
        bind = scope.get("proxy_bind")
        preread = scope.get("ssl_preread")
        waits = preread is not None and preread[0][:1] == ("on",)
        return Route(
            front=front,
            server_address=target.address,
            server_port=target.port,
            sends=sends,
            origin=target.origin,
            ssl_tlv=sends == "v2" and front.tls_terminated,
            ssl_cipher=sends == "v2" and front.tls_terminated,
            tls_to_server=target.tls or (kind == "stream" and tls is not None and tls[0][:1] == ("on",)),
            source_address=bind[0][0] if bind and bind[0] and "$" not in bind[0][0] else None,
            waits_for_client=waits,
            sends_origin=header[1] if header else None,
            source_origin=bind[1] if bind else None,
            wait_origin=preread[1] if waits and preread else None,
            block_origin=pass_origin,
            chosen_by=target.choices[0][2] if target.choices else None,
            chosen_for=", ".join(chosen.condition(key) for chosen, key, _ in target.choices) or None,
        )


def _add_unjudged_mail_header(scope: _Scope, problems: list[Problem]) -> None:
    """A mail server block that sends a header to a back end only `auth_http` names at run time:
    said, so that "no findings" does not claim the header was judged."""
    header = scope.get("proxy_protocol")
    if header is not None and header[0][:1] in (("on",), ("v2",)):
        _add(problems, Problem("mail proxy_protocol: sends a PROXY header to the back end auth_http names at run "
                               "time, not written here: not judged against Stalwart's listeners", header[1]))


def _add(problems: list[Problem], problem: Problem) -> None:
    """A problem said once (a proxy_pass is read for each listen line of its server)."""
    if problem not in problems:
        problems.append(problem)
