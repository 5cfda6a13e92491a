"""The command line's shared vocabulary: the choices its options take and the options
several commands share, with their help text (spec/cli.md is the contract). No logic."""

from __future__ import annotations

import math
from enum import Enum

import typer


class Format(str, Enum):
    rich = "rich"
    json = "json"
    markdown = "markdown"
    html = "html"


class PlainFormat(str, Enum):
    rich = "rich"
    json = "json"


class Role(str, Enum):
    auto = "auto"
    front = "front"
    server = "server"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    never = "never"


class SniffFormat(str, Enum):
    rich = "rich"
    json = "json"
    markdown = "markdown"
    html = "html"
    jsonl = "jsonl"


def finite(value: float | None) -> float | None:
    """A number option: nan and the infinities are refused (a nan compares false with every
    bound, so `--duration nan` would never stop)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number proxydiag can use: give a finite one")
    return value


# Options shared by analyze and sniff (spec/cli.md).
FORMAT = typer.Option(Format.rich, "--format", "-F",
                      help="rich (for people), json (for scripts), markdown (for a support ticket) or html (one "
                      "self-contained page, a ladder diagram of each finding's conversation).")
OUTPUT = typer.Option(None, "--output", "-o", help="Write the report to this file.")
ANONYMIZE = typer.Option(False, "--anonymize",
                         help="Replace every IP address and host name by a stable pseudonym (same kind of address).")
QUIET = typer.Option(False, "--quiet", "-q", help="Only the findings.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="More evidence, longer fixes, every connection.")
EXPECT = typer.Option([], "--expect", metavar="v1|v2|any|none|PORT=VALUE",
                      help="What the mail server's listeners expect; repeat per port, e.g. --expect v2 --expect 25=none.")
TRUSTED = typer.Option(None, "--trusted-networks", metavar="CIDR,...",
                       help="The proxies Stalwart trusts (its proxy trusted-networks).")
STALWART = typer.Option(None, "--stalwart-config", metavar="FILE",
                        help="Stalwart's config.toml (up to 0.15) or its exported JSON objects (0.16): listeners, implicit "
                        "TLS and trusted networks decide what each connection must carry; the file itself is checked too "
                        "(PD6xx).")
PORTS = typer.Option(None, "--ports", metavar="LIST", help="Mail ports to consider besides the defaults.")
MIN_CONNECTIONS = typer.Option(5, "--min-connections", help="Connections an endpoint needs before single-client-address judges it.")
HEADER_DELAY = typer.Option(1.0, "--header-delay", metavar="SECONDS", callback=finite,
                            help="A header later than this is proxy-header-late.")
GREETING_TIMEOUT = typer.Option(5.0, "--greeting-timeout", metavar="SECONDS", callback=finite,
                                help="No greeting within this is no-greeting.")
INTERNAL = typer.Option(False, "--internal-clients", help="Private client addresses are expected (no private-client-address).")
FAIL_ON = typer.Option(FailOn.error, "--fail-on", help="Severity that makes the exit code 1.")
ANNOTATE = typer.Option(None, "--annotate", metavar="OUT.pcapng",
                        help="Also write the capture back as pcapng with the judgement inside, for Wireshark: each frame "
                        "a finding cites carries a packet comment (CODE slug: ...), each connection's first "
                        "frame a one-line summary (tshark -r OUT.pcapng -Y 'frame.comment contains \"tls-flag-lost\"'). "
                        "Not with --anonymize: the frames carry the original addresses.")
JOBS = typer.Option("1", "--jobs", "-j", metavar="N|auto",
                    help="Worker processes sharing the connections (default 1); auto: one per CPU (up to 4) for "
                    "captures over 50 MB. Each worker reads the whole capture: they pay only on idle cores "
                    "(bench/README.md).")
