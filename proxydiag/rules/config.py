"""PD6xx: the Stalwart configuration (with --stalwart-config), alone and against traffic."""

from __future__ import annotations

from typing import Iterator

from proxydiag.configs.model import Route
from proxydiag.configs.stalwart import Listener, StalwartConfig
from proxydiag.facts.model import Connection
from proxydiag.jsontypes import JsonDict
from proxydiag.rules.base import Context, Hit, Rule, describe_endpoint

MAIL_PROTOCOLS = frozenset({"smtp", "lmtp", "imap", "pop3", "managesieve", "http"})


class TrustedNetworkMatchesNothing(Rule):
    code = "PD601"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is None:
            return
        for entry in ctx.config.all_entries():
            if entry.problem:
                yield Hit(f"Trusted-networks entry {entry.text!r} ({entry.where}): {entry.problem}.",
                          evidence={"entry": entry.text, "where": entry.where}, group=entry.where)


class EmptyOverrideIgnored(Rule):
    code = "PD602"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is None or ctx.config.style != "json" or not ctx.config.trusted:
            return
        for listener in ctx.config.listeners:
            if listener.trusted_override == []:
                yield Hit(
                    f"Listener {listener.id!r} has an empty overrideProxyTrustedNetworks: it is used only when non-empty, "
                    "so the server-wide proxyTrustedNetworks still applies and headers stay mandatory from those sources.",
                    evidence={"listener": listener.id}, group=listener.id,
                )


class ProxyOverrideIgnored(Rule):
    code = "PD603"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is None or ctx.config.style != "toml":
            return
        for listener in ctx.config.listeners:
            if listener.override_toggle:
                yield Hit(
                    f"server.listener.{listener.id}.proxy.override is set, but the server never reads it; only "
                    f"server.listener.{listener.id}.proxy.trusted-networks replaces the global list.",
                    evidence={"listener": listener.id}, group=listener.id,
                )


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
                    f"The server-wide trusted networks make PROXY headers mandatory on the HTTP listener "
                    f"{listener.id!r} too, and connections from a trusted proxy carried none.",
                    [conn], self._evidence(listener, config), group=listener.id,
                )

    def finish(self, ctx: Context) -> Iterator[Hit]:
        config = ctx.config
        if config is None:
            return
        for listener in self._mandatory(config):
            if listener.id not in ctx.cache.get(self.code, ()) and not _headers_reach(listener, ctx.proxy_routes):
                yield Hit(
                    f"The server-wide trusted networks make PROXY headers mandatory on the HTTP listener "
                    f"{listener.id!r} too: an HTTP proxy that sends none gets Bad Gateway / \"invalid proxy header\".",
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


class ForwardedTrustedFromAnyone(Rule):
    code = "PD605"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is not None and ctx.config.use_x_forwarded:
            key = "http.use-x-forwarded" if ctx.config.style == "toml" else "Http.useXForwarded"
            where = (" in this file (0.12 to 0.15 normally keep it in the database: the web admin's value wins "
                     "if it differs)") if ctx.config.style == "toml" else ""
            yield Hit(
                f"{key} is on{where}: Stalwart takes Forwarded / X-Forwarded-For from any peer, so a client reaching the "
                "HTTP listener directly chooses its own address (and HTTP parse errors never lead to a ban).",
                evidence={"setting": key}, group=key,
            )


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
                f"Headers from {conn.tcp.src_addr} reach listener {listener.id!r} ({describe_endpoint(conn)}), which does "
                "not trust that source: Stalwart reads the header as protocol data.",
                [conn], {"listener": listener.id, "source": conn.tcp.src_addr}, group=(listener.id, conn.tcp.src_addr, "untrusted"),
            )
        elif conn.header is None and trusted and conn.client_first is not None:
            yield Hit(
                f"Connections from the trusted source {conn.tcp.src_addr} to listener {listener.id!r} carry no header: "
                "Stalwart waits for one and the session hangs or fails.",
                [conn], {"listener": listener.id, "source": conn.tcp.src_addr}, group=(listener.id, conn.tcp.src_addr, "missing"),
            )


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
                f"{'PROXY headers reach' if conn.header else 'Mail traffic reaches'} port {conn.tcp.dst_port}, which no "
                f"listener in {config.path} binds: is this the right file, or a listener bound elsewhere?",
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
