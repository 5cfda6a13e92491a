"""Fixes written against the user's own lines: each is a `LineEdit` (this line, as
written, becomes these lines), rendered as a small diff, and applied by the tests to
the real configuration, which the proxy itself then checks (`haproxy -c`, `nginx -t`).

What each proxy needs (HAProxy configuration.txt 5.2; nginx ngx_stream_proxy_module,
ngx_stream_core_module and ngx_stream_ssl_preread_module; stunnel(8) `protocol`):
- header on:   HAProxy `send-proxy-v2` / `send-proxy-v2-ssl` on the server line;
               nginx `proxy_protocol on;` in the server block (v1; `proxy_protocol v2;`
               from 1.31.4); stunnel `protocol = proxy` (v1).
- header off:  the same, removed.
- TLS facts:   HAProxy `send-proxy-v2-ssl` (with `proxy-v2-options ssl-cipher` where the file
               shows 1.9+); nginx before 1.31.4 and stunnel cannot send
               the SSL TLV: pass TLS through to Stalwart's implicit-TLS listener instead.
- checks:      HAProxy `check-send-proxy`.
- listeners:   HAProxy `accept-proxy` / nginx `listen ... proxy_protocol` removed.
- waiting:     HAProxy `tcp-request inspect-delay`, nginx `ssl_preread on;` removed.
- Traefik's Docker labels (compose files): the label line is edited, or a label added after it
               in the same style (list item `- key=value`, or mapping `key: "value"`):
               `traefik.tcp.services.S.loadbalancer.proxyProtocol.version=2`, `...tls.passthrough=true`,
               `...server.port=N`, `...rule=HostSNI(`*`)` (doc.traefik.io Docker routing reference).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from proxydiag.configs.citation import shown_line
from proxydiag.configs.model import FrontListener, Origin, Route, VersionFloor
from proxydiag.configs.stalwart import Listener

HAPROXY_SEND = re.compile(r"(?<![ \t])[ \t]+(?:no-)?send-proxy(?:-v2(?:-ssl(?:-cn)?)?)?(?=[ \t#]|$)")


@dataclass(frozen=True)
class LineEdit:
    """Line `origin.line` of `origin.path`, written as `origin.text`, becomes `new`
    (no lines: deleted)."""

    origin: Origin
    new: tuple[str, ...]


def apply(text: str, edits: Iterable[LineEdit], path: str) -> str:
    """The file's text with the edits for it applied (bottom up, so line numbers hold)."""
    lines = text.split("\n")
    for edit in sorted((e for e in edits if e.origin.path == path), key=lambda e: -e.origin.line):
        index = edit.origin.line - 1
        if index < len(lines) and lines[index].rstrip("\r") == edit.origin.text.rstrip("\r"):
            lines[index : index + 1] = list(edit.new)
    return "\n".join(lines)


def render(edits: Iterable[LineEdit], advice: str = "") -> str:
    parts = []
    for edit in edits:
        kept = edit.new[:1] == (edit.origin.text,)  # lines inserted after it: the line is context
        diff = [f"{' ' if kept else '-'}{edit.origin.shown}",
                *(f"+{shown_line(line, edit.origin.focus)}" for line in (edit.new[1:] if kept else edit.new))]
        parts.append(f"In {edit.origin.path}, line {edit.origin.line}:\n\n```diff\n" + "\n".join(diff) + "\n```")
    if advice:
        parts.append(advice)
    return "\n\n".join(parts)


def _replace(origin: Origin | None, new_text: str) -> tuple[LineEdit, ...]:
    if origin is None or new_text == origin.text:
        return ()
    return (LineEdit(origin, (new_text,)),)


def _insert_after(origin: Origin, line: str) -> tuple[LineEdit, ...]:
    indent = re.match(r"[ \t]*", origin.text)
    return (LineEdit(origin, (origin.text, (indent.group(0) if indent else "") + line)),)


def _append_word(text: str, word: str) -> str:
    """A word added at the end of a line, before its comment."""
    body, hash_, comment = text.partition("#")
    return f"{body.rstrip()} {word}" + (f"  #{comment}" if hash_ else "")


def _drop_word(text: str, word: str) -> str:
    return re.sub(rf"[ \t]+{re.escape(word)}(?=[ \t;#]|$)", "", text)


# --- the header ----------------------------------------------------------------------------


def set_header(route: Route, kind: str, version: str = "v2", ssl: bool = False,
               floor: VersionFloor | None = None) -> tuple[LineEdit, ...]:
    if kind == "haproxy":
        word = "send-proxy" if version == "v1" else ("send-proxy-v2-ssl" if ssl else "send-proxy-v2")
        if word == "send-proxy-v2-ssl" and _at_least(floor, (1, 9)) and "proxy-v2-options" not in route.origin.text:
            word += " proxy-v2-options ssl-cipher"  # 1.9+ (the file shows it): the cipher for Stalwart's Received
        return _replace(route.origin, _append_word(HAPROXY_SEND.sub("", route.origin.text), word))
    if kind == "nginx":
        # `on` (v1) works on every nginx; `v2` where the file shows 1.31.4 or later
        value = "v2" if version == "v2" and nginx_has_v2(floor) else "on"
        if route.sends_origin is not None and route.sends_origin != route.origin:
            return _replace(route.sends_origin, re.sub(r"proxy_protocol\s+\S+;", f"proxy_protocol {value};", route.sends_origin.text))
        return _insert_after(route.block_origin or route.origin, f"proxy_protocol {value};")
    if kind == "stunnel":
        return _insert_after(route.origin, "protocol = proxy")
    if kind == "stalwart-proxy":
        return _stalwart_proxy_header(route, on=True)
    if route.sends_origin is not None and kind in STRUCTURED:
        return _replace(route.sends_origin, _version_to(route.sends_origin.text, version))
    label = _label(route.block_origin) if kind == "traefik" else None
    if label is not None and route.block_origin is not None:
        service = _label_service(label["key"])
        return () if service is None else _add_label(
            route.block_origin, label, f"traefik.tcp.services.{service}.loadbalancer.proxyProtocol.version", version[-1])
    if kind == "traefik" and route.block_origin is not None and floor is not None and floor.name and version == "v2" \
            and "serversTransports" not in route.block_origin.text and route.sends_origin is None \
            and re.match(r"^\s*\[?[\w.\"-]*loadBalancer\]?:?\s*$", route.block_origin.text):
        # 3.5.2+, shown by a transport that already sends v2: name it (the load balancer's own is deprecated)
        name = floor.name
        return _add_child(route.block_origin, f"serversTransport: {name}", f'serversTransport = "{name}"')
    if kind == "traefik" and route.block_origin is not None:
        return _add_child(route.block_origin, "proxyProtocol: {version: 2}", "proxyProtocol = { version = 2 }")
    if kind == "caddy" and route.block_origin is not None and route.block_origin.text.rstrip().endswith("{"):
        return _add_child(route.block_origin, f"proxy_protocol {version}", f"proxy_protocol {version}")
    return ()


STRUCTURED = ("traefik", "caddy", "envoy", "kubernetes")


def _version_to(text: str, version: str) -> str:
    """`version: 1` -> `version: 2`, `proxy_protocol v1` -> `proxy_protocol v2`, `V1` -> `V2`."""
    digit = version[-1]
    return re.sub(r"(?<![\w.])([vV]?)[12](?![\w.])", lambda match: match.group(1) + digit, text, count=1)


def _add_child(origin: Origin, yaml_line: str, toml_line: str) -> tuple[LineEdit, ...]:
    """A line added in the block opened on `origin` (YAML key, TOML table, or `{` block)."""
    indent = re.match(r"[ \t]*", origin.text)
    own = indent.group(0) if indent else ""
    if origin.text.lstrip().startswith("["):
        return (LineEdit(origin, (origin.text, own + toml_line)),)
    step = own + ("\t" if own.startswith("\t") else "  ")
    return (LineEdit(origin, (origin.text, step + yaml_line)),)


def remove_header(route: Route, kind: str) -> tuple[LineEdit, ...]:
    if kind == "haproxy":
        text = HAPROXY_SEND.sub("", route.origin.text)
        if text == route.origin.text:  # the header comes from a default-server line
            text = _append_word(text, "no-send-proxy-v2" if route.sends == "v2" else "no-send-proxy")
        return _replace(route.origin, _drop_word(text, "check-send-proxy"))  # its checks would still send one
    if kind in ("nginx", "stunnel") and route.sends_origin is not None:
        return (LineEdit(route.sends_origin, ()),)
    if kind in ("caddy", "kubernetes") and route.sends_origin is not None and "{" not in route.sends_origin.text:
        return (LineEdit(route.sends_origin, ()),)
    if kind == "traefik" and route.sends_origin is not None and "proxyprotocol" in route.sends_origin.text.lower():
        return (LineEdit(route.sends_origin, ()),)
    if kind == "stalwart-proxy":
        return _stalwart_proxy_header(route, on=False)
    return ()


def _stalwart_proxy_header(route: Route, on: bool) -> tuple[LineEdit, ...]:
    """stalwartlabs/proxy: the destination's `proxy_protocol` (true by default) or `forwarding`."""
    where = route.sends_origin
    if where is not None and re.match(r"^\s*forwarding\s*=", where.text):
        return _replace(where, re.sub(r"=.*$", '= "proxy"' if on else '= "none"', where.text, count=1))
    if where is not None:
        return _replace(where, re.sub(r"=.*$", "= true" if on else "= false", where.text, count=1))
    if route.block_origin is None or on:
        return ()
    return (LineEdit(route.block_origin, (route.block_origin.text, "proxy_protocol = false")),)


def nginx_has_v2(floor: VersionFloor | None) -> bool:
    return _at_least(floor, (1, 31, 4))


def _at_least(floor: VersionFloor | None, version: tuple[int, ...]) -> bool:
    return floor is not None and _version_tuple(floor.version) >= version


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def carry_tls(route: Route, kind: str, implicit_port: int | None, floor: VersionFloor | None = None) -> tuple[LineEdit, ...]:
    """The header says the client used TLS (HAProxy; nginx where the file shows 1.31.4), or TLS
    is passed through to the implicit-TLS listener (proxies that cannot send the SSL TLV)."""
    if kind == "haproxy" or (kind == "nginx" and nginx_has_v2(floor)):
        return set_header(route, kind, "v2", ssl=True, floor=floor)
    if route.front is None or implicit_port is None:
        return ()
    if kind == "traefik":
        return _traefik_passthrough(route.front.origin) + point_to_port(route, kind, implicit_port)
    if kind != "nginx":
        return ()
    edits = _replace(route.front.origin, _drop_word(route.front.origin.text, "ssl"))
    return edits + point_to_port(route, kind, implicit_port)


def _traefik_passthrough(tls: Origin) -> tuple[LineEdit, ...]:
    """The router's `tls` (terminating) becomes `passthrough: true`."""
    label = _label(tls)
    if label is not None:
        if label["key"].lower().endswith(".tls"):
            return _replace(tls, _label_with(label, label["key"] + ".passthrough", "true"))
        prefix = re.match(r"(?i)(traefik\.tcp\.routers\.[^.]+)\.tls\.", label["key"])
        return _add_label(tls, label, prefix.group(1) + ".tls.passthrough", "true") if prefix else ()
    inline = re.match(r"^(\s*tls:\s*)\{\s*\}\s*$", tls.text)
    if inline:
        return _replace(tls, inline.group(1) + "{passthrough: true}")
    if re.match(r"^\s*tls:\s*$", tls.text):
        return _add_child(tls, "passthrough: true", "")
    if re.match(r"^\s*\[[^\]]*\.tls\]\s*$", tls.text):
        return _add_child(tls, "", "passthrough = true")
    return ()


def tls_advice(kind: str, implicit_port: int | None, floor: VersionFloor | None = None) -> str:
    """What to do where the proxy cannot send the SSL TLV (or, for the version shown, can)."""
    passthrough = ("pass TLS through to Stalwart's implicit-TLS listener"
                   + (f" (port {implicit_port})" if implicit_port else "") + " and let Stalwart terminate it")
    if kind == "nginx" and nginx_has_v2(floor) and floor is not None:
        return (f"This nginx is {floor.version} or later (`proxy_protocol v2;` at {floor.origin}): v2 carries the SSL TLV "
                f"once nginx terminated TLS. On an older nginx (stable 1.30 and before) it cannot: {passthrough}.")
    if kind == "nginx":
        return f"nginx 1.31.4 and later: `proxy_protocol v2;` carries the SSL TLV. Older nginx cannot: {passthrough}."
    if kind == "stunnel":
        return f"stunnel sends only v1 headers, which cannot carry TLS facts: {passthrough}, or use HAProxy `send-proxy-v2-ssl`."
    if kind == "traefik":
        return f"Traefik never sends the SSL TLV (traefik #5859): {passthrough} (router `tls: {{passthrough: true}}`)."
    if kind in ("caddy", "envoy"):
        return f"{kind.capitalize()} sends no SSL TLV of its own: {passthrough}."
    if kind == "kubernetes":
        return f"The load balancer's header carries no TLS facts: {passthrough} (no certificate on the load balancer)."
    if kind == "stalwart-proxy":
        return ("Stalwart's proxy sends no SSL TLV: speak TLS to Stalwart instead, `tls = \"starttls\"` on the "
                "destination's protocol (Stalwart upgrades the session itself) or `tls = \"implicit\"` with the "
                "implicit-TLS port" + (f" ({implicit_port})" if implicit_port else "") + ".")
    return ""


def speak_tls(route: Route, kind: str) -> tuple[LineEdit, ...]:
    """nginx's http `proxy_pass http://` becomes `https://`: nginx then speaks TLS to the upstream."""
    where = route.block_origin or route.origin
    if kind != "nginx" or not re.search(r"\bproxy_pass\s+http://", where.text, re.I):
        return ()
    return _replace(where, re.sub(r"(?i)(\bproxy_pass\s+)http://", r"\1https://", where.text, count=1))


def plaintext_to_implicit(route: Route, kind: str, plain_port: int | None,
                          floor: VersionFloor | None = None) -> tuple[LineEdit, ...]:
    """The proxy terminates TLS and forwards plaintext to an implicit-TLS listener, fixed as the
    page says: nginx passes TLS through (no `ssl`, no certificates on the listener, the
    implicit-TLS upstream kept), unless a map chooses the upstream (by `$ssl_server_name`,
    maybe, which only terminating sets); HAProxy forwards to the plain listener of the same
    service with the SSL TLV; the others to that plain listener. `plain_port` is never another
    service's (the MX listener for submissions)."""
    if kind == "nginx" and route.front is not None and route.chosen_by is None:
        return speak_tls(route, kind) or pass_tls_through(route.front)
    moved = point_to_port(route, kind, plain_port)
    if kind != "haproxy" or not moved or route.sends == "none":
        return moved
    pointed = replace(route, origin=replace(route.origin, text=moved[0].new[0]))
    return tuple(LineEdit(route.origin, edit.new) for edit in set_header(pointed, kind, "v2", ssl=True, floor=floor)) or moved


def pass_tls_through(front: FrontListener) -> tuple[LineEdit, ...]:
    """nginx: `listen ... ssl` without `ssl`, and the listener's certificate lines gone."""
    unencrypted = _replace(front.origin, _drop_word(front.origin.text, "ssl"))
    return unencrypted + tuple(LineEdit(origin, ()) for origin in front.certificate_origins) if unencrypted else ()


def check_with_header(route: Route, kind: str) -> tuple[LineEdit, ...]:
    if kind == "haproxy":
        return _replace(route.origin, _append_word(route.origin.text, "check-send-proxy"))
    return ()


def check_without_header(route: Route, kind: str) -> tuple[LineEdit, ...]:
    if kind == "haproxy" and "check-send-proxy" in route.origin.text:
        return _replace(route.origin, _drop_word(route.origin.text, "check-send-proxy"))
    return ()


# --- listeners, waiting, ports -------------------------------------------------------------


def stop_accepting(front: FrontListener, kind: str) -> tuple[LineEdit, ...]:
    if kind == "haproxy" and "accept-proxy" in front.origin.text:
        return _replace(front.origin, _drop_word(front.origin.text, "accept-proxy"))
    if kind == "haproxy":  # tcp-request connection expect-proxy: not on the bind line
        return ()
    if kind == "nginx":
        return _replace(front.origin, _drop_word(front.origin.text, "proxy_protocol"))
    # Traefik: only the one-line form; `proxyProtocol: {}` left behind would still read headers
    if kind == "traefik" and re.match(r"^\s*proxyProtocol:\s*\{[^{}]*\}\s*$", front.origin.text):
        return (LineEdit(front.origin, ()),)
    if kind == "caddy" and re.match(r"^\s*proxy_protocol\s*$", front.origin.text):
        return (LineEdit(front.origin, ()),)
    return ()


def accept_header(front: FrontListener, kind: str) -> tuple[LineEdit, ...]:
    if kind == "haproxy":
        return _replace(front.origin, _append_word(front.origin.text, "accept-proxy"))
    if kind == "nginx":
        return _replace(front.origin, _before_semicolon(front.origin.text, " proxy_protocol"))
    return ()


def _before_semicolon(text: str, words: str) -> str:
    """`listen 25 ;` -> `listen 25 proxy_protocol;` (with str methods: a pattern of blanks
    before `;` rescans a run of blanks from each blank)."""
    end = text.find(";")
    return text if end < 0 else text[:end].rstrip() + words + text[end:]


def stop_waiting(route: Route, kind: str) -> tuple[LineEdit, ...]:
    wait = route.wait_origin
    if wait is None:
        return ()
    if kind in ("haproxy", "nginx"):
        return (LineEdit(wait, ()),)
    label = _label(wait) if kind == "traefik" else None
    if label is not None and label["key"].lower().endswith(".rule"):
        return _replace(wait, _label_with(label, label["key"], "HostSNI(`*`)"))
    if kind == "traefik" and re.match(r"\s*(?:-\s*)?(rule|match)\s*[:=]", wait.text):
        return _replace(wait, re.sub(r"(?<=[:=]).*$", " \"HostSNI(`*`)\"", wait.text, count=1))
    if kind == "kubernetes":
        return _nlb_on_first_ack(wait)
    if kind == "caddy" and re.match(r"^\s*proxy_protocol\s*$", wait.text):  # caddy-l4's handler reads the client first
        return (LineEdit(wait, ()),)
    return ()


NLB_FIRST_ACK = "proxy_protocol_v2.client_to_server.header_placement=on_first_ack"


def _nlb_on_first_ack(annotation: Origin) -> tuple[LineEdit, ...]:
    """An AWS NLB sends the header at once (on the handshake's ACK) instead of with the
    client's first data."""
    if "target-group-attributes" in annotation.text:
        text = annotation.text.rstrip()
        quote = text[-1] if text.endswith(("\"", "'")) else ""
        return _replace(annotation, text[:len(text) - len(quote)] + f",{NLB_FIRST_ACK}" + quote)
    indent = re.match(r"[ \t]*", annotation.text)
    return (LineEdit(annotation, (annotation.text, (indent.group(0) if indent else "")
                                  + f"service.beta.kubernetes.io/aws-load-balancer-target-group-attributes: {NLB_FIRST_ACK}")),)


def point_to_port(route: Route, kind: str, port: int | None) -> tuple[LineEdit, ...]:
    old = route.server_port
    if port is None or old is None or old == port:
        return ()
    label = _label(route.origin) if kind == "traefik" else None
    if label is not None:
        return _replace(route.origin, _label_with(label, label["key"], str(port))) \
            if label["key"].lower().endswith(".server.port") else ()
    # `host:PORT`, and the YAML/JSON forms `targetPort: PORT`, `port_value: PORT`, `"host:PORT"`
    text = re.sub(rf"(:[ \t]*[\"']?){old}(?=[\s;#\"',}}]|$)", rf"\g<1>{port}", route.origin.text, count=1)
    return _replace(route.origin, text)


# --- Traefik's Docker labels (compose files) ---------------------------------------------------

# One label as a compose file writes it: a list item `- traefik.a.b=value` (maybe quoted whole),
# or a mapping entry `traefik.a.b: value` (key and value maybe quoted).
LABEL = re.compile(r"^(?P<head>[ \t]*(?:-[ \t]*)?)(?P<quote>[\"']?)(?P<key>traefik\.[^\s=:\"']+)(?P<key_end>[\"']?)"
                   r"(?P<sep>[ \t]*[=:][ \t]*)(?P<value_quote>[\"']?)(?P<value>.*?)(?P<close>[\"']?)(?P<comment>[ \t]*(?:#.*)?)$")


def _label(origin: Origin | None) -> re.Match[str] | None:
    return LABEL.match(origin.text) if origin is not None else None


def _label_with(label: re.Match[str], key: str, value: str, comment: bool = True) -> str:
    """The label line with another key and value, in the same style."""
    mapping = ":" in label["sep"]
    value_quote = label["value_quote"] or ('"' if mapping and not comment else "")
    close = label["close"] or value_quote
    return (f"{label['head']}{label['quote']}{key}{label['key_end']}{label['sep']}{value_quote}{value}{close}"
            + (label["comment"] if comment else ""))


def _add_label(origin: Origin, label: re.Match[str], key: str, value: str) -> tuple[LineEdit, ...]:
    """A label added after `origin`, in its style (a mapping's new value is quoted: labels are strings)."""
    return (LineEdit(origin, (origin.text, _label_with(label, key, value, comment=False))),)


def _label_service(key: str) -> str | None:
    """The TCP service a label is about: its own (`...services.S...`), or one named after its
    router (`...routers.R...`), which Traefik links to a router that names none when it is the only one."""
    parts = key.split(".")
    if len(parts) < 4 or parts[1].lower() != "tcp" or parts[2].lower() not in ("services", "routers"):
        return None
    return parts[3]


# --- Stalwart's side -----------------------------------------------------------------------


# Where each proxy sets the address it connects to its servers from (HAProxy `source`,
# nginx stream `proxy_bind`, stalwartlabs/proxy `source_ips`, Envoy's cluster
# `upstream_bind_config`, stunnel `local`); Traefik, Caddy's layer4 and the cloud
# controllers have none: their address is the host's.
SOURCE_DIRECTIVES = {"haproxy": "HAProxy `source`", "nginx": "nginx `proxy_bind`",
                     "stalwart-proxy": "the destination's `source_ips`", "envoy": "the cluster's `upstream_bind_config`",
                     "stunnel": "stunnel `local`"}


def trust_advice(where: str, source: str | None, listener: Listener, kind: str | None = None) -> str:
    if source:
        entry = f"{source}/32" if ":" not in source else f"{source}/128"
        return (f"Or, if this proxy should pass client addresses: let Stalwart trust it ({where}): add `{entry}` to "
                f"`server.proxy.trusted-networks` (0.15) / `proxyTrustedNetworks` (0.16), or to listener "
                f"{listener.id!r}'s own list.")
    directive = SOURCE_DIRECTIVES.get(kind or "")
    if directive is None:
        return ("Or, if this proxy should pass client addresses: add the address it connects from (its host's) to "
                f"Stalwart's trusted networks ({where}).")
    return (f"Or, if this proxy should pass client addresses: add the proxy's address to Stalwart's trusted networks "
            f"({where}), and set the address the proxy connects from ({directive}).")


def mx_port_advice(where: str | None) -> str:
    return ("and bind Stalwart's SMTP listener to port 25" + (f" ({where})" if where else "") +
            " (a container maps its own port 25 wherever it likes); or keep the port and change the rules that test "
            "`local_port == 25` (session.auth.require, SPF/DMARC/iprev verification).")
