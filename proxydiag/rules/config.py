"""PD6xx: the Stalwart configuration (with --stalwart-config), alone and against traffic."""

from __future__ import annotations

from typing import Iterator

from proxydiag.configs.stalwart import Listener, StalwartConfig
from proxydiag.facts.model import Connection
from proxydiag.jsontypes import JsonDict
from proxydiag.rules.base import Context, Hit, Rule, describe_endpoint

MAIL_PROTOCOLS = frozenset({"smtp", "lmtp", "imap", "pop3", "managesieve", "http"})


class TrustedNetworkMatchesNothing(Rule):
    code, slug, severity = "PD601", "trusted-network-matches-nothing", "error"

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.config is None:
            return
        for entry in ctx.config.all_entries():
            if entry.problem:
                yield Hit(f"Trusted-networks entry {entry.text!r} ({entry.where}): {entry.problem}.",
                          evidence={"entry": entry.text, "where": entry.where}, group=entry.where)


class EmptyOverrideIgnored(Rule):
    code, slug, severity = "PD602", "empty-override-ignored", "warning"

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
    code, slug, severity = "PD603", "proxy-override-ignored", "warning"

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
    code, slug, severity = "PD604", "proxy-required-on-http", "warning"

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
            if listener.id not in ctx.cache.get(self.code, ()):
                yield Hit(
                    f"The server-wide trusted networks make PROXY headers mandatory on the HTTP listener "
                    f"{listener.id!r} too: an HTTP proxy that sends none gets Bad Gateway / \"invalid proxy header\".",
                    [], self._evidence(listener, config), group=listener.id, severity="warning",
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


class ForwardedTrustedFromAnyone(Rule):
    code, slug, severity = "PD605", "forwarded-trusted-from-anyone", "warning"

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
    code, slug, severity = "PD606", "traffic-vs-config", "error"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        config = ctx.config
        if config is None or conn.mid_stream:
            return
        listener = config.listener_for_port(conn.tcp.dst_port)
        if listener is None:
            if conn.header is not None or conn.protocol in MAIL_PROTOCOLS or conn.greeting is not None:
                yield Hit(
                    f"{'PROXY headers reach' if conn.header else 'Mail traffic reaches'} port {conn.tcp.dst_port}, which no "
                    f"listener in {config.path} binds: is this the right file, or a listener bound elsewhere?",
                    [conn], {"port": conn.tcp.dst_port}, group=("unknown-port", conn.tcp.dst_port),
                )
            return
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


RULES = [
    TrustedNetworkMatchesNothing(),
    EmptyOverrideIgnored(),
    ProxyOverrideIgnored(),
    ProxyRequiredOnHttp(),
    ForwardedTrustedFromAnyone(),
    TrafficVsConfig(),
]
