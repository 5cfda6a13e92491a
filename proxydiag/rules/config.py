"""PD6xx: the Stalwart configuration (with --stalwart-config), alone and against traffic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from proxydiag.configs.model import Route
from proxydiag.configs.stalwart import Listener, StalwartConfig
from proxydiag.facts.model import Connection
from proxydiag.jsontypes import JsonDict
from proxydiag.rules.base import Context, Endpoint, Hit, Rule, server_endpoint
from proxydiag.rules.said import Names, Said

MAIL_PROTOCOLS = frozenset({"smtp", "lmtp", "imap", "pop3", "managesieve", "http"})


@dataclass(frozen=True)
class BadTrustEntry(Said):
    entry: str
    where: str  # the key or object path of the entry
    problem: str  # the reader's account, which quotes the entry

    def message(self, names: Names) -> str:
        return (f"Trusted-networks entry {names.text(self.entry)!r} ({names.text(self.where)}): "
                f"{names.text(self.problem)}.")


class TrustedNetworkMatchesNothing(Rule):
    code = "PD601"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is None:
            return
        for entry in ctx.config.all_entries():
            if entry.problem:
                yield Hit(BadTrustEntry(entry.text, entry.where, entry.problem),
                          evidence={"entry": entry.text, "where": entry.where}, group=entry.where)


@dataclass(frozen=True)
class EmptyOverride(Said):
    listener: str

    def message(self, names: Names) -> str:
        return (f"Listener {names.text(self.listener)!r} has an empty overrideProxyTrustedNetworks: it is used only when "
                "non-empty, so the server-wide proxyTrustedNetworks still applies and headers stay mandatory from those "
                "sources.")


class EmptyOverrideIgnored(Rule):
    code = "PD602"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is None or ctx.config.style != "json" or not ctx.config.trusted:
            return
        for listener in ctx.config.listeners:
            if listener.trusted_override == []:
                yield Hit(
                    EmptyOverride(listener.id),
                    evidence={"listener": listener.id}, group=listener.id,
                )


@dataclass(frozen=True)
class OverrideToggle(Said):
    listener: str

    def message(self, names: Names) -> str:
        key = f"server.listener.{names.text(self.listener)}.proxy"
        return (f"{key}.override is set, but the server never reads it; only {key}.trusted-networks replaces the "
                "global list.")


class ProxyOverrideIgnored(Rule):
    code = "PD603"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is None or ctx.config.style != "toml":
            return
        for listener in ctx.config.listeners:
            if listener.override_toggle:
                yield Hit(
                    OverrideToggle(listener.id),
                    evidence={"listener": listener.id}, group=listener.id,
                )


@dataclass(frozen=True)
class HeadersMandatoryOnHttp(Said):
    listener: str
    seen: bool  # connections from a trusted proxy carried none, rather than a proxy that would send none

    def message(self, names: Names) -> str:
        consequence = (", and connections from a trusted proxy carried none" if self.seen else
                       ": an HTTP proxy that sends none gets Bad Gateway / \"invalid proxy header\"")
        return (f"The server-wide trusted networks make PROXY headers mandatory on the HTTP listener "
                f"{names.text(self.listener)!r} too{consequence}.")


class ProxyRequiredOnHttp(Rule):
    code = "PD604"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        config = ctx.config
        if config is None or conn.header is not None:
            return
        for listener in self._mandatory(config):
            if conn.tcp.dst_port in listener.ports and config.trusts(listener, conn.tcp.src_addr):
                ctx.cache.setdefault(self.code, set()).add(listener.id)
                yield Hit(
                    HeadersMandatoryOnHttp(listener.id, seen=True),
                    [conn], self._evidence(listener, config), group=listener.id,
                )

    def finish(self, ctx: Context) -> Iterator[Hit]:
        config = ctx.config
        if config is None:
            return
        for listener in self._mandatory(config):
            if listener.id not in ctx.cache.get(self.code, ()) and not _headers_reach(listener, ctx.proxy_routes):
                yield Hit(
                    HeadersMandatoryOnHttp(listener.id, seen=False),
                    [], self._evidence(listener, config), group=listener.id,
                )

    @staticmethod
    def _mandatory(config: StalwartConfig) -> list[Listener]:
        """HTTP listeners that take the server-wide trusted networks (no override of their own)."""
        if not any(entry.network for entry in config.trusted):
            return []
        return [listener for listener in config.listeners
                if listener.protocol == "http" and listener.trusted_override in (None, [])]

    @staticmethod
    def _evidence(listener: Listener, config: StalwartConfig) -> JsonDict:
        return {"listener": listener.id, "trusted_networks": [entry.text for entry in config.trusted]}


def _headers_reach(listener: Listener, routes: tuple[Route, ...]) -> bool:
    """Whether the proxies given forward to the listener's ports and every one of their
    routes there sends a header: then a proxy that sends none is not what they do."""
    reaching = [route for route in routes if route.target_port in listener.ports]
    return bool(reaching) and all(route.sends != "none" for route in reaching)


@dataclass(frozen=True)
class ForwardedFromAnyPeer(Said):
    toml: bool  # the file style, which names the setting and where its value lives

    def message(self, names: Names) -> str:
        key = "http.use-x-forwarded" if self.toml else "Http.useXForwarded"
        where = (" in this file (0.12 to 0.15 normally keep it in the database: the web admin's value wins "
                 "if it differs)") if self.toml else ""
        return (f"{key} is on{where}: Stalwart takes Forwarded / X-Forwarded-For from any peer, so a client reaching the "
                "HTTP listener directly chooses its own address (and HTTP parse errors never lead to a ban).")


class ForwardedTrustedFromAnyone(Rule):
    code = "PD605"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is not None and ctx.config.use_x_forwarded:
            key = "http.use-x-forwarded" if ctx.config.style == "toml" else "Http.useXForwarded"
            yield Hit(
                ForwardedFromAnyPeer(toml=ctx.config.style == "toml"),
                evidence={"setting": key}, group=key,
            )


@dataclass(frozen=True)
class HeadersFromUntrusted(Said):
    source: str
    listener: str
    server: Endpoint

    def message(self, names: Names) -> str:
        return (f"Headers from {names.address(self.source)} reach listener {names.text(self.listener)!r} "
                f"({self.server.told(names)}), which does not trust that source: Stalwart reads the header as protocol data.")


@dataclass(frozen=True)
class NoHeaderFromTrusted(Said):
    source: str
    listener: str

    def message(self, names: Names) -> str:
        return (f"Connections from the trusted source {names.address(self.source)} to listener "
                f"{names.text(self.listener)!r} carry no header: Stalwart waits for one and the session hangs or fails.")


class TrafficVsConfig(Rule):
    code = "PD606"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        config = ctx.config
        if config is None or conn.mid_stream:
            return
        listener = config.listener_for_port(conn.tcp.dst_port)
        if listener is None:
            return  # PD608
        trusted = config.trusts(listener, conn.tcp.src_addr)
        if conn.header is not None and not trusted:
            yield Hit(
                HeadersFromUntrusted(conn.tcp.src_addr, listener.id, server_endpoint(conn)),
                [conn], {"listener": listener.id, "source": conn.tcp.src_addr}, group=(listener.id, conn.tcp.src_addr, "untrusted"),
            )
        elif conn.header is None and trusted and conn.client_first is not None:
            yield Hit(
                NoHeaderFromTrusted(conn.tcp.src_addr, listener.id),
                [conn], {"listener": listener.id, "source": conn.tcp.src_addr}, group=(listener.id, conn.tcp.src_addr, "missing"),
            )


@dataclass(frozen=True)
class PortNoListenerBinds(Said):
    port: int
    headers: bool  # PROXY headers reach it, not only mail traffic
    config: str  # the Stalwart file

    def message(self, names: Names) -> str:
        return (f"{'PROXY headers reach' if self.headers else 'Mail traffic reaches'} port {self.port}, which no "
                f"listener in {names.path(self.config)} binds: is this the right file, or a listener bound elsewhere?")


class UnknownListenerPort(Rule):
    """Traffic to a port no listener of the Stalwart file binds (`crosscheck` raises the
    same code for a proxy's route there)."""

    code = "PD608"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        config = ctx.config
        if config is None or conn.mid_stream or config.listener_for_port(conn.tcp.dst_port) is not None:
            return
        if conn.header is not None or conn.protocol in MAIL_PROTOCOLS or conn.greeting is not None:
            yield Hit(
                PortNoListenerBinds(conn.tcp.dst_port, headers=bool(conn.header), config=config.path),
                [conn], {"port": conn.tcp.dst_port}, group=conn.tcp.dst_port,
            )


RULES = [
    TrustedNetworkMatchesNothing(),
    EmptyOverrideIgnored(),
    ProxyOverrideIgnored(),
    ProxyRequiredOnHttp(),
    ForwardedTrustedFromAnyone(),
    TrafficVsConfig(),
    UnknownListenerPort(),
]
