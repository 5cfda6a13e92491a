"""The service table: what a TCP port means to a mail server and to the rules.

One table for every part that needs to know what a port is: the recognisers (the
protocol when the bytes do not tell), the rules (implicit TLS, who speaks first, which
ports serve the internet), flow orientation (which side is the server in a mid-stream
capture) and the live capture's BPF filter. `--ports` adds to it.

Stalwart's guides put the mail server's listeners on 10000 + the public port (10025,
10465, 10587, 10143, 10993, 10110, 14190, 10443) behind a proxy that owns the public
ports; such a port means the same service as its public one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

SHIFTED_PORT_OFFSET = 10000


@dataclass(frozen=True, slots=True)
class Service:
    """What a listener on a port serves."""

    name: str  # smtp, submission, submissions, lmtp, imap, imaps, pop3, pop3s, managesieve, http, https, or "mail"
    protocol: str | None  # the application protocol: smtp, lmtp, imap, pop3, managesieve, http (None: unknown)
    implicit_tls: bool  # TLS from the first byte (465, 993, 995, 443)
    server_speaks_first: bool  # the client waits for a greeting
    # Mail clients and servers reach it from anywhere, so the header's source must be a
    # public address (the catalog's list for private-client-address: 25, 465, 587, 143, 993, 110, 995).
    internet_facing: bool
    public_port: int  # the standard port of this service
    shifted: bool = False  # reached on 10000 + the public port

    @property
    def family(self) -> str:
        """The service with TLS set aside: 993 and 143 are both `imap`, 465 and 587 both
        `submission` (a TLS-terminating proxy may rightly map one onto the other)."""
        return _FAMILIES.get(self.name, self.name)


STANDARD_SERVICES: Mapping[int, Service] = {
    service.public_port: service
    for service in (
        Service("smtp", "smtp", False, True, True, 25),
        Service("submission", "smtp", False, True, True, 587),
        Service("submissions", "smtp", True, True, True, 465),
        Service("smtp", "smtp", False, True, True, 2525),
        Service("lmtp", "lmtp", False, True, False, 24),
        Service("imap", "imap", False, True, True, 143),
        Service("imaps", "imap", True, True, True, 993),
        Service("pop3", "pop3", False, True, True, 110),
        Service("pop3s", "pop3", True, True, True, 995),
        Service("managesieve", "managesieve", False, True, False, 4190),
        Service("http", "http", False, False, False, 80),
        Service("http", "http", False, False, False, 8080),
        Service("https", "http", True, False, False, 443),
    )
}
_FAMILIES = {"submissions": "submission", "imaps": "imap", "pop3s": "pop3", "https": "http"}
SERVICE_NAMES = {service.name: service for service in STANDARD_SERVICES.values()}


class ServiceTable:
    """Port -> Service, the standard ports, their 10000+ shifts, and the user's own."""

    def __init__(self, extra: Mapping[int, Service] | None = None) -> None:
        self._extra = dict(extra or {})

    def lookup(self, port: int | None) -> Service | None:
        if not isinstance(port, int):
            return None
        if port in self._extra:
            return self._extra[port]
        if port in STANDARD_SERVICES:
            return STANDARD_SERVICES[port]
        shifted = STANDARD_SERVICES.get(port - SHIFTED_PORT_OFFSET)
        return replace(shifted, shifted=True) if shifted is not None else None

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.lookup(port) is not None

    def protocol(self, port: int | None) -> str | None:
        service = self.lookup(port)
        return service.protocol if service else None

    def implicit_tls(self, port: int | None) -> bool:
        service = self.lookup(port)
        return bool(service and service.implicit_tls)

    def ports(self) -> list[int]:
        """Every port of the table, shifted ones included: what a capture filter should catch."""
        standard = set(STANDARD_SERVICES) | {port + SHIFTED_PORT_OFFSET for port in STANDARD_SERVICES}
        return sorted(standard | set(self._extra))

    def bpf_filter(self) -> str:
        """A tcpdump filter for every port of the table."""
        return "tcp and (" + " or ".join(f"port {port}" for port in self.ports()) + ")"

    def with_ports(self, extra: Mapping[int, Service]) -> ServiceTable:
        return ServiceTable({**self._extra, **extra})


DEFAULT_TABLE = ServiceTable()


def parse_ports(spec: str | Iterable[str] | None) -> dict[int, Service]:
    """`--ports`: `2525,10024` (a mail port whose protocol the bytes tell) or
    `2525=smtp,8443=https` (a port and the service it carries). Raises ValueError with
    a message fit for the user."""
    if not spec:
        return {}
    items = spec.split(",") if isinstance(spec, str) else [part for item in spec for part in item.split(",")]
    services: dict[int, Service] = {}
    for item in (item.strip() for item in items):
        if not item:
            continue
        port_text, _, name = item.partition("=")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"--ports: {port_text!r} is not a port number") from None
        if not 0 < port < 65536:
            raise ValueError(f"--ports: {port} is not a port number (1-65535)")
        if name:
            known = SERVICE_NAMES.get(name.strip().lower())
            if known is None:
                raise ValueError(f"--ports: unknown service {name!r} (one of {', '.join(sorted(SERVICE_NAMES))})")
            services[port] = replace(known, public_port=port)  # the user's own port for that service
        else:
            services[port] = DEFAULT_TABLE.lookup(port) or Service("mail", None, False, True, False, port)
    return services
