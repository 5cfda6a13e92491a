"""PD2xx: what the header says about the client."""

from __future__ import annotations

import ipaddress
from typing import Iterator

from proxydiag.facts.correlate import describe_chain
from proxydiag.facts.model import Connection
from proxydiag.rules.base import Context, Hit, Rule, describe_endpoint, endpoint
from proxydiag.rules.header import is_local_client

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
        if legs is not None and front is not None and relay is not None:
            hops = legs.chain(conn)
            evidence |= {"chain": describe_chain(hops), "legs": [hop.id for hop in hops]}
            why = (
                f"{header.src_addr} only relayed the connection (connection {front.id}): it accepted it from "
                f"{relay.tcp.src_addr} (connection {relay.id}) just before; the chain is {describe_chain(hops)}"
            )
        elif front is not None:
            return  # the client's own leg carries that address and port: the header is right
        elif header.src_addr == conn.tcp.src_addr:
            if is_local_client(header.src_addr, header.dst_addr or ""):
                return  # a local test on the proxy host (PD205 says so)
            why = f"it equals this leg's own TCP source ({conn.tcp.src_addr}), the proxy itself"
        elif legs is not None and legs.is_proxy(header.src_addr):
            why = f"{header.src_addr} is the address of another proxy (it sends PROXY headers itself), not of a client"
        else:
            return
        yield Hit(
            f"The PROXY header to {describe_endpoint(conn)} names {header.src_addr} as the client, but {why}: Stalwart "
            "runs SPF, DMARC and rate limits against the proxy.",
            [conn], evidence, group=endpoint(conn),
        )


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
                f"All {headers} PROXY headers to {describe_endpoint(conn)} carry the same client address "
                f"{source}: an L4 balancer or a NAT in front of the proxy hides the real clients.",
                [conn], {"header_src": source, "headers": headers}, group=endpoint(conn),
            )


class LocalCommand(Rule):
    code = "PD203"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.header is not None and conn.header.command == "LOCAL":
            stats = ctx.expectations.stats(conn)
            only_local = stats.local == stats.connections
            yield Hit(
                f"{'Every' if only_local else 'Some'} connection{'' if only_local else 's'} to {describe_endpoint(conn)} "
                f"carr{'ies' if only_local else 'y'} a LOCAL header (health checks: no client address by design)"
                + (": no real client traffic reached this endpoint in the capture." if only_local else "."),
                [conn], {"local": stats.local, "connections": stats.connections}, group=endpoint(conn),
                escalated=only_local and stats.connections >= 2,
            )


class UnknownClientAddress(Rule):
    code = "PD204"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or header.command != "PROXY":
            return
        if header.family in ("UNKNOWN", "UNSPEC"):
            yield Hit(
                f"The PROXY header to {describe_endpoint(conn)} is {'v1 UNKNOWN' if header.version == 1 else 'v2 PROXY with AF_UNSPEC'}: "
                "the server learns nothing about the client and uses the proxy's address.",
                [conn], {"family": header.family}, group=endpoint(conn),
            )


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
                f"The PROXY header for port {port} names {header.src_addr}, a client on the proxy host itself: a local "
                "test. The header is right; real clients will show their public addresses.",
                [conn], {"header_src": header.src_addr, "port": port, "local_test": True},
                group=("local", *endpoint(conn)), lowered="local test",
            )
            return
        yield Hit(
            f"The PROXY header for port {port} names the private address {header.src_addr} as the client: "
            "the real client's address was lost before this proxy (NAT, a load balancer, a container network).",
            [conn], {"header_src": header.src_addr, "port": port}, group=endpoint(conn),
        )


class UntrustedProxySource(Rule):
    code = "PD206"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        if conn.header is None:
            return
        verdict = _trust(conn, ctx)
        if verdict is None or verdict[0]:
            return
        yield Hit(
            f"The proxy {conn.tcp.src_addr} sends PROXY headers to {describe_endpoint(conn)} but is not in the trusted "
            f"networks ({verdict[1]}): Stalwart reads its header as protocol data.",
            [conn], {"tcp_src": conn.tcp.src_addr, "trusted_networks": verdict[1]}, group=(conn.tcp.src_addr,) + endpoint(conn),
        )


def _trust(conn: Connection, ctx: Context) -> tuple[bool, str] | None:
    """Whether the leg's source is trusted, and by what list; None when no list is known."""
    if ctx.config is not None:
        listener = ctx.config.listener_for_port(conn.tcp.dst_port)
        if listener is not None:
            entries = ctx.config.effective_trust(listener)
            return ctx.config.trusts(listener, conn.tcp.src_addr), f"listener {listener.id!r}: {[e.text for e in entries]}"
    trusted = ctx.expectations.trusted
    if trusted is not None:
        return any(entry.matches(conn.tcp.src_addr) for entry in trusted), f"--trusted-networks {[e.text for e in trusted]}"
    return None


class MappedIpv4Address(Rule):
    code = "PD207"

    def check(self, conn: Connection, ctx: Context) -> Iterator[Hit]:
        header = conn.header
        if header is None or header.src_addr is None or ":" not in header.src_addr:
            return
        if ipaddress.IPv6Address(header.src_addr).ipv4_mapped:
            yield Hit(
                f"The PROXY header to {describe_endpoint(conn)} carries the IPv4-mapped address {header.src_addr}: "
                "trusted-network and SPF matching must handle it.",
                [conn], {"header_src": header.src_addr}, group=endpoint(conn),
            )


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
                f"The header says the client connected to port {header.dst_port} ({public.name}) but "
                f"{describe_endpoint(conn)} speaks {conn.protocol}: the proxy forwards one service to another's listener.",
                [conn], {"header_dst_port": header.dst_port, "protocol": conn.protocol}, group=endpoint(conn),
            )
        elif public.name == "smtp" and listener is not None and listener.family == "submission":
            yield Hit(
                f"Public port {header.dst_port} (MX) is forwarded to the submission listener {describe_endpoint(conn)}, "
                "where AUTH is required: inbound mail from other servers is refused.",
                [conn], {"header_dst_port": header.dst_port, "listener_port": conn.tcp.dst_port}, group=endpoint(conn),
            )


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
            f"Public port 25 reaches an SMTP listener on port {conn.tcp.dst_port}. Stalwart's default rules test the "
            "listener's own port: with it not 25, inbound MX mail must authenticate and SPF/DMARC/iprev are skipped"
            + (" (the server answered \"503 5.5.1 You must authenticate first.\")." if refusal else "."),
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
