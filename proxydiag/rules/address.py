"""PD2xx: what the header says about the client."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterator

from proxydiag.facts.capture_hops import connection_hop
from proxydiag.facts.hop import Expects
from proxydiag.facts.model import Connection
from proxydiag.rules.base import Context, Endpoint, Hit, Rule, endpoint, network, server_endpoint
from proxydiag.rules.front import is_local_client
from proxydiag.rules.hops import UNTRUSTED_PROXY_SOURCE
from proxydiag.rules.said import AS_THEY_ARE, Names, Said

# Where a real client's address cannot come from on the internet: RFC 1918, CGNAT (RFC
# 6598), loopback, link-local, and IPv6 unique-local. Documentation ranges are not here:
# Python's is_private counts them, a mail server's logs never see them.
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                "::1/128", "fe80::/10", "fc00::/7")
)

# The application protocol each recognised protocol may carry, by service family.
PROTOCOL_FAMILIES = {"smtp": {"smtp", "submission"}, "lmtp": {"smtp", "lmtp"}, "imap": {"imap"}, "pop3": {"pop3"},
                     "managesieve": {"managesieve"}, "http": {"http"}}


def is_internal(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in INTERNAL_NETWORKS if network.version == ip.version)


@dataclass(frozen=True)
class Chain(Said):
    """client -> relay -> proxy -> server, as addresses and ports."""

    client: str
    hops: tuple[Endpoint, ...]  # where each leg went, client side first

    def message(self, names: Names) -> str:
        return " -> ".join([names.address(self.client), *(hop.told(names) for hop in self.hops)])


def chain_of(hops: list[Connection]) -> Chain:
    return Chain(hops[0].tcp.src_addr, tuple(server_endpoint(hop) for hop in hops))


@dataclass(frozen=True)
class OnlyRelayed(Said):
    client: str
    front: int  # the connection the named client's address relayed
    relay_source: str
    relay: int
    chain: Chain

    def message(self, names: Names) -> str:
        return (f"{names.address(self.client)} only relayed the connection (connection {self.front}): it accepted it "
                f"from {names.address(self.relay_source)} (connection {self.relay}) just before; the chain is "
                f"{self.chain.message(names)}")


@dataclass(frozen=True)
class LegOwnSource(Said):
    source: str

    def message(self, names: Names) -> str:
        return f"it equals this leg's own TCP source ({names.address(self.source)}), the proxy itself"


@dataclass(frozen=True)
class AnotherProxy(Said):
    client: str

    def message(self, names: Names) -> str:
        return (f"{names.address(self.client)} is the address of another proxy (it sends PROXY headers itself), "
                "not of a client")


@dataclass(frozen=True)
class ProxyNamedAsClient(Said):
    server: Endpoint
    client: str
    why: Said  # OnlyRelayed, LegOwnSource or AnotherProxy

    def message(self, names: Names) -> str:
        return (f"The PROXY header to {self.server.told(names)} names {names.address(self.client)} as the client, but "
                f"{self.why.message(names)}: Stalwart runs SPF, DMARC and rate limits against the proxy.")


class ClientAddressIsProxy(Rule):
    code = "PD201"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or not header.carries_address or header.src_addr is None:
            return
        legs = ctx.legs
        front = legs.front_leg(conn) if legs is not None else None
        relay = legs.previous_hop(front) if legs is not None and front is not None else None
        evidence: dict[str, object] = {"header_src": header.src_addr, "tcp_src": conn.tcp.src_addr}
        why: Said
        if legs is not None and front is not None and relay is not None:
            hops = legs.chain(conn)
            chain = chain_of(hops)
            evidence |= {"chain": chain.message(AS_THEY_ARE), "legs": [hop.id for hop in hops]}
            why = OnlyRelayed(header.src_addr, front.id, relay.tcp.src_addr, relay.id, chain)
        elif front is not None:
            return  # the client's own leg carries that address and port: the header is right
        elif header.src_addr == conn.tcp.src_addr:
            if is_local_client(header.src_addr, header.dst_addr or ""):
                return  # a local test on the proxy host (PD205 says so)
            why = LegOwnSource(conn.tcp.src_addr)
        elif legs is not None and legs.is_proxy(header.src_addr):
            why = AnotherProxy(header.src_addr)
        else:
            return
        yield Hit(
            ProxyNamedAsClient(server_endpoint(conn), header.src_addr, why),
            [conn], evidence, group=endpoint(conn),
        )


@dataclass(frozen=True)
class OneClientAddress(Said):
    headers: int
    server: Endpoint
    client: str

    def message(self, names: Names) -> str:
        return (f"All {self.headers} PROXY headers to {self.server.told(names)} carry the same client address "
                f"{names.address(self.client)}: an L4 balancer or a NAT in front of the proxy hides the real clients.")


class SingleClientAddress(Rule):
    code = "PD202"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.header is None:
            return
        stats = ctx.expectations.stats(conn)
        headers = sum(stats.header_sources.values())
        if headers >= ctx.options.min_connections and len(stats.header_sources) == 1:
            (source,) = stats.header_sources
            yield Hit(
                OneClientAddress(headers, server_endpoint(conn), source),
                [conn], {"header_src": source, "headers": headers}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class LocalHeaders(Said):
    server: Endpoint
    only_local: bool  # every connection to the endpoint, not some

    def message(self, names: Names) -> str:
        only = self.only_local
        return (f"{'Every' if only else 'Some'} connection{'' if only else 's'} to {self.server.told(names)} "
                f"carr{'ies' if only else 'y'} a LOCAL header (health checks: no client address by design)"
                + (": no real client traffic reached this endpoint in the capture." if only else "."))


class LocalCommand(Rule):
    code = "PD203"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.header is not None and conn.header.command == "LOCAL":
            stats = ctx.expectations.stats(conn)
            only_local = stats.local == stats.connections
            yield Hit(
                LocalHeaders(server_endpoint(conn), only_local),
                [conn], {"local": stats.local, "connections": stats.connections}, group=endpoint(conn),
                escalated=only_local and stats.connections >= 2,
            )


@dataclass(frozen=True)
class NoClientInHeader(Said):
    server: Endpoint
    version: int

    def message(self, names: Names) -> str:
        said = "v1 UNKNOWN" if self.version == 1 else "v2 PROXY with AF_UNSPEC"
        return (f"The PROXY header to {self.server.told(names)} is {said}: "
                "the server learns nothing about the client and uses the proxy's address.")


class UnknownClientAddress(Rule):
    code = "PD204"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or header.command != "PROXY":
            return
        if header.family in ("UNKNOWN", "UNSPEC"):
            yield Hit(
                NoClientInHeader(server_endpoint(conn), header.version),
                [conn], {"family": header.family}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class ClientOnProxyHost(Said):
    port: int
    client: str

    def message(self, names: Names) -> str:
        return (f"The PROXY header for port {self.port} names {names.address(self.client)}, a client on the proxy host "
                "itself: a local test. The header is right; real clients will show their public addresses.")


@dataclass(frozen=True)
class PrivateClient(Said):
    port: int
    client: str

    def message(self, names: Names) -> str:
        return (f"The PROXY header for port {self.port} names the private address {names.address(self.client)} as the "
                "client: the real client's address was lost before this proxy (NAT, a load balancer, a container network).")


class PrivateClientAddress(Rule):
    code = "PD205"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if ctx.options.internal_clients or header is None or not header.carries_address or header.src_addr is None:
            return
        public = conn.header_service or conn.service
        if public is None or not public.internet_facing or not is_internal(header.src_addr):
            return
        port = header.dst_port if header.dst_port is not None else conn.tcp.dst_port
        if is_local_client(header.src_addr, header.dst_addr or ""):
            yield Hit(
                ClientOnProxyHost(port, header.src_addr),
                [conn], {"header_src": header.src_addr, "port": port, "local_test": True},
                group=("local", *endpoint(conn)), lowered="local test",
            )
            return
        yield Hit(
            PrivateClient(port, header.src_addr),
            [conn], {"header_src": header.src_addr, "port": port}, group=endpoint(conn),
        )


@dataclass(frozen=True)
class TrustList(Said):
    """The trusted networks a source was judged against: a Stalwart listener's, or the
    command line's (`listener` None)."""

    listener: str | None
    entries: tuple[str, ...]

    def message(self, names: Names) -> str:
        entries = [network(names, entry) for entry in self.entries]
        if self.listener is None:
            return f"--trusted-networks {entries}"
        return f"listener {names.text(self.listener)!r}: {entries}"


@dataclass(frozen=True)
class ProxyNotTrusted(Said):
    proxy: str
    server: Endpoint
    trusted: TrustList

    def message(self, names: Names) -> str:
        return (f"The proxy {names.address(self.proxy)} sends PROXY headers to {self.server.told(names)} but is not in "
                f"the trusted networks ({self.trusted.message(names)}): Stalwart reads its header as protocol data.")


class UntrustedProxySource(Rule):
    code = "PD206"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.header is None:
            return
        verdict = _trust(conn, ctx)
        if verdict is None or not UNTRUSTED_PROXY_SOURCE.applies(connection_hop(conn, None, expects=_expects(verdict[0]))):
            return
        yield Hit(
            ProxyNotTrusted(conn.tcp.src_addr, server_endpoint(conn), verdict[1]),
            [conn], {"tcp_src": conn.tcp.src_addr, "trusted_networks": verdict[1].message(AS_THEY_ARE)},
            group=(conn.tcp.src_addr,) + endpoint(conn),
        )


def _expects(trusted: bool) -> Expects:
    """What a Stalwart listener expects of a sender from its trust list: a header exactly
    from the trusted (as facts/config_hops.py `route_hop` reads a configuration)."""
    return "required" if trusted else "none"


def _trust(conn: Connection, ctx: Context) -> tuple[bool, TrustList] | None:
    """Whether the leg's source is trusted, and by what list; None when no list is known."""
    if ctx.config is not None:
        listener = ctx.config.listener_for_port(conn.tcp.dst_port)
        if listener is not None:
            entries = ctx.config.effective_trust(listener)
            return (ctx.config.trusts(listener, conn.tcp.src_addr),
                    TrustList(listener.id, tuple(e.text for e in entries)))
    trusted = ctx.expectations.trusted
    if trusted is not None:
        return (any(entry.matches(conn.tcp.src_addr) for entry in trusted),
                TrustList(None, tuple(e.text for e in trusted)))
    return None


@dataclass(frozen=True)
class MappedClient(Said):
    server: Endpoint
    client: str

    def message(self, names: Names) -> str:
        return (f"The PROXY header to {self.server.told(names)} carries the IPv4-mapped address "
                f"{names.address(self.client)}: trusted-network and SPF matching must handle it.")


class MappedIpv4Address(Rule):
    code = "PD207"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or header.src_addr is None or ":" not in header.src_addr:
            return
        if ipaddress.IPv6Address(header.src_addr).ipv4_mapped:
            yield Hit(
                MappedClient(server_endpoint(conn), header.src_addr),
                [conn], {"header_src": header.src_addr}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class OtherServiceForwarded(Said):
    public_port: int | None
    service: str
    server: Endpoint
    protocol: str | None

    def message(self, names: Names) -> str:
        return (f"The header says the client connected to port {self.public_port} ({self.service}) but "
                f"{self.server.told(names)} speaks {self.protocol}: the proxy forwards one service to another's listener.")


@dataclass(frozen=True)
class MxToSubmission(Said):
    public_port: int | None
    server: Endpoint

    def message(self, names: Names) -> str:
        return (f"Public port {self.public_port} (MX) is forwarded to the submission listener {self.server.told(names)}, "
                "where AUTH is required: inbound mail from other servers is refused.")


class DestinationMismatch(Rule):
    code = "PD208"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header, public = conn.header, conn.header_service
        if header is None or public is None:
            return
        spoken = PROTOCOL_FAMILIES.get(conn.protocol or "")
        listener = conn.service
        if spoken and public.family not in spoken:
            yield Hit(
                OtherServiceForwarded(header.dst_port, public.name, server_endpoint(conn), conn.protocol),
                [conn], {"header_dst_port": header.dst_port, "protocol": conn.protocol}, group=endpoint(conn),
            )
        elif public.name == "smtp" and listener is not None and listener.family == "submission":
            yield Hit(
                MxToSubmission(header.dst_port, server_endpoint(conn)),
                [conn], {"header_dst_port": header.dst_port, "listener_port": conn.tcp.dst_port}, group=endpoint(conn),
            )


@dataclass(frozen=True)
class MxOnOtherPort(Said):
    listener_port: int
    saw_503: bool  # the server asked for authentication

    def message(self, names: Names) -> str:
        return (f"Public port 25 reaches an SMTP listener on port {self.listener_port}. Stalwart's default rules test the "
                "listener's own port: with it not 25, inbound MX mail must authenticate and SPF/DMARC/iprev are skipped"
                + (" (the server answered \"503 5.5.1 You must authenticate first.\")." if self.saw_503 else "."))


class MxPortRemapped(Rule):
    code = "PD209"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header, listener = conn.header, conn.service
        if header is None or header.dst_port != 25 or conn.tcp.dst_port == 25:
            return
        if listener is not None and listener.family == "submission":
            return  # PD208: the MX port reaches a submission listener
        if conn.protocol not in ("smtp", None):
            return
        refusal = conn.server_text and "503 5.5.1" in conn.server_text
        yield Hit(
            MxOnOtherPort(conn.tcp.dst_port, bool(refusal)),
            [conn], {"listener_port": conn.tcp.dst_port, "saw_503": bool(refusal)}, group=endpoint(conn),
        )


RULES = [
    ClientAddressIsProxy(),
    SingleClientAddress(),
    LocalCommand(),
    UnknownClientAddress(),
    PrivateClientAddress(),
    UntrustedProxySource(),
    MappedIpv4Address(),
    DestinationMismatch(),
    MxPortRemapped(),
]
