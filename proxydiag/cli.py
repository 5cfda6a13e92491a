"""The command line (spec/cli.md is the contract): options and their help, one call of the
command's run in `proxydiag.pipeline`, the report rendered, the exit code.

Each command imports what it uses when it runs: `decode`, `explain`, `rules` and
`--help` start without the analysis, the rules, scapy or rich's Markdown (tests/test_cli_start.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, List, NoReturn

import typer

from proxydiag import __version__
from proxydiag import cli_options as shared
from proxydiag.cli_options import FailOn, Format, PlainFormat, Role, SniffFormat, finite
from proxydiag.pipeline.outcome import EXIT_FINDINGS, EXIT_OK, EXIT_UNUSABLE, Outcome
from proxydiag.report.model import View

# Click's usage error, whichever click typer carries (its own copy in newer versions).
UsageError: Any = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")

app = typer.Typer(
    name="proxydiag",
    help=(
        "Diagnose PROXY protocol problems between a reverse proxy (HAProxy, nginx, Traefik, Caddy, "
        "Envoy, cloud load balancers) and a mail server (Stalwart, Postfix, Dovecot) from packet captures.\n\n"
        "Capture on the proxy host or the mail server host, e.g.\n\n"
        "  tcpdump -i any -s 0 -w cap.pcap 'tcp port 25 or tcp port 587 or tcp port 993'\n\n"
        "then run: proxydiag analyze cap.pcap"
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _say(line: str) -> None:
    typer.echo(f"proxydiag: {line}", err=True)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2: the command could not run."""
    _say(message)
    raise typer.Exit(EXIT_UNUSABLE)


def _finish(outcome: Outcome, view: View, fail_on: FailOn) -> NoReturn:
    """The report rendered (if the run has one), then the exit code."""
    from proxydiag.report.render import WriteError, render, write

    if outcome.report is not None:
        try:
            write(render(outcome.report, view), view.output)
        except WriteError as error:
            fail(str(error))
    raise typer.Exit(outcome.exit_code(fail_on.value))


def _view(format: Format | SniffFormat, output: Path | None, anonymize: bool, quiet: bool = False,
          verbose: bool = False) -> View:
    return View(str(format.value), output, anonymize, quiet, verbose, sys.argv[1:])


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"proxydiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version."),
) -> None:
    pass


@app.command()
def analyze(
    files: List[str] = typer.Argument(
        None, metavar="FILE...", help="pcap or pcapng files ('-' reads standard input), and beside them proxy configurations and "
        "log files (kind told by content). Several files are one analysis (the client-to-proxy and proxy-to-server "
        "legs may be in different files)."
    ),
    format: Format = shared.FORMAT,
    output: Path | None = shared.OUTPUT,
    anonymize: bool = shared.ANONYMIZE,
    quiet: bool = shared.QUIET,
    verbose: bool = shared.VERBOSE,
    expect: List[str] = shared.EXPECT,
    trusted_networks: str | None = shared.TRUSTED,
    stalwart_config: Path | None = shared.STALWART,
    ports: str | None = shared.PORTS,
    min_connections: int = shared.MIN_CONNECTIONS,
    header_delay: float = shared.HEADER_DELAY,
    greeting_timeout: float = shared.GREETING_TIMEOUT,
    internal_clients: bool = shared.INTERNAL,
    fail_on: FailOn = shared.FAIL_ON,
    jobs: str = shared.JOBS,
    annotate: Path | None = shared.ANNOTATE,
) -> None:
    """Read captures, reassemble the opening of every TCP connection, decode PROXY headers
    and the first words of each side, and report what is wrong (the findings catalog:
    proxydiag rules).

    Examples:

      proxydiag analyze proxy-host.pcap

      proxydiag analyze front.pcap back.pcap --expect v2

      proxydiag analyze cap.pcap --stalwart-config /opt/stalwart/etc/config.toml

      proxydiag analyze cap.pcap /etc/haproxy/haproxy.cfg haproxy.log

      proxydiag analyze cap.pcap --annotate annotated.pcapng

    Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 an input
    could not be read (the report still covers what was readable).
    """
    from proxydiag.pipeline import commands
    from proxydiag.pipeline.outcome import JudgeOptions

    judging = JudgeOptions(expect, trusted_networks, stalwart_config, ports, min_connections, header_delay,
                           greeting_timeout, internal_clients)
    outcome = commands.analyze(commands.AnalyzeRequest(_say, files or [], judging, output, annotate, anonymize, jobs))
    _finish(outcome, _view(format, output, anonymize, quiet, verbose), fail_on)


@app.command()
def sniff(
    interface: str = typer.Option(..., "--interface", "-i", help="The interface to capture on (any: all of them)."),
    bpf: str | None = typer.Option(None, "--filter", "-f", metavar="BPF",
                                   help="Capture filter replacing the default (the mail ports and 10000-10999)."),
    count: int = typer.Option(0, "--count", "-c", help="Stop after this many packets (0: no limit)."),
    duration: float | None = typer.Option(None, "--duration", metavar="SECONDS", callback=finite, help="Stop after this long."),
    write: Path | None = typer.Option(None, "--write", "-w", metavar="FILE",
                                      help="Also write the packets to this pcap, e.g. to attach to a ticket."),
    file_size: float | None = typer.Option(None, "-C", metavar="MILLION_BYTES", callback=finite,
                                           help="With -w: start a new file (FILE1, FILE2, ...) once one holds more than "
                                           "this many million bytes."),
    rotate_seconds: float | None = typer.Option(None, "-G", metavar="SECONDS", callback=finite,
                                                help="With -w: start a new file this often; FILE may hold strftime "
                                                "fields (%Y%m%d-%H%M%S)."),
    file_count: int | None = typer.Option(None, "-W", metavar="COUNT",
                                          help="With -C or -G: keep at most this many files, deleting the oldest."),
    format: SniffFormat = typer.Option(SniffFormat.rich, "--format", "-F",
                                       help="rich, json, markdown or html: the report at the end; jsonl: one JSON object per "
                                       "event as it happens (connections, findings, heartbeats, the end), for log "
                                       "shippers (docs/sensor.md)."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the report (with jsonl: the events, reopened on SIGHUP) to this file."),
    metrics: str | None = typer.Option(None, "--metrics", metavar="ADDR:PORT",
                                       help="Serve Prometheus metrics (proxydiag_*) here while capturing, e.g. "
                                       "127.0.0.1:9465."),
    heartbeat: float = typer.Option(60.0, "--heartbeat", metavar="SECONDS", callback=finite,
                                    help="How often the counters are written (jsonl) and exported (--metrics)."),
    anonymize: bool = shared.ANONYMIZE,
    quiet: bool = shared.QUIET,
    verbose: bool = shared.VERBOSE,
    expect: List[str] = shared.EXPECT,
    trusted_networks: str | None = shared.TRUSTED,
    stalwart_config: Path | None = shared.STALWART,
    ports: str | None = shared.PORTS,
    min_connections: int = shared.MIN_CONNECTIONS,
    header_delay: float = shared.HEADER_DELAY,
    greeting_timeout: float = shared.GREETING_TIMEOUT,
    internal_clients: bool = shared.INTERNAL,
    fail_on: FailOn = shared.FAIL_ON,
    annotate: Path | None = typer.Option(None, "--annotate", metavar="OUT.pcapng",
                                         help="With -w FILE: once the capture ends, write FILE back as pcapng with "
                                         "the judgement inside (packet comments on the frames the findings cite, a "
                                         "summary on each connection's first frame), for Wireshark. Not with "
                                         "--anonymize, -C or -G."),
) -> None:
    """Capture live (as root, or with CAP_NET_RAW), print findings as they appear, and the
    full report when the capture ends (--duration, --count, Ctrl-C or SIGTERM). As a
    service: --format jsonl and --metrics (docs/sensor.md).

    Examples:

      proxydiag sniff -i eth0 --duration 60

      proxydiag sniff -i any -f 'tcp port 10025' -w ticket.pcap

      proxydiag sniff -i eth0 --duration 60 -w cap.pcap --annotate cap-annotated.pcapng

      proxydiag sniff -i eth0 --format jsonl -o events.jsonl --metrics 127.0.0.1:9465 -w cap-%H.pcap -G 3600 -W 24
    """
    from proxydiag.pipeline.outcome import JudgeOptions
    from proxydiag.pipeline.sniff import SniffRequest
    from proxydiag.pipeline.sniff import sniff as run

    judging = JudgeOptions(expect, trusted_networks, stalwart_config, ports, min_connections, header_delay,
                           greeting_timeout, internal_clients)
    outcome = run(SniffRequest(_say, interface, bpf, count, duration, write, file_size, rotate_seconds, file_count,
                               format.value, output, metrics, heartbeat, anonymize, annotate, judging))
    _finish(outcome, _view(format, output, anonymize, quiet, verbose), fail_on)


@app.command()
def probe(
    targets: List[str] = typer.Argument(..., metavar="HOST:PORT...", help="Listeners to ask ([IPv6]:PORT for IPv6)."),
    tls: bool | None = typer.Option(None, "--tls/--no-tls", help="Speak TLS from the first byte (after any header); "
                                    "default: on the implicit-TLS ports (465, 993, 995, 443 and their 10000+ shifts)."),
    timeout: float = typer.Option(5.0, "--timeout", metavar="SECONDS", callback=finite,
                                  help="Per step: connecting, each answer awaited."),
    source: str | None = typer.Option(None, "--source", metavar="ADDR", help="Connect from this local address."),
    role: Role = typer.Option(Role.auto, "--role", help="What the listener is: a proxy's public front, a mail server "
                              "behind a proxy, or auto (by the port: 25, 465, 587, 143, 993, 110, 995 are fronts; "
                              "10000+ and the rest are servers)."),
    format: Format = shared.FORMAT,
    output: Path | None = shared.OUTPUT,
    write: Path | None = typer.Option(None, "--write", "-w", metavar="FILE",
                                      help="Also write the probe's conversations to this pcap (proxydiag analyze reads it)."),
    anonymize: bool = shared.ANONYMIZE,
    quiet: bool = shared.QUIET,
    verbose: bool = shared.VERBOSE,
    fail_on: FailOn = shared.FAIL_ON,
) -> None:
    """Ask a live listener (a mail server's, or a proxy's front port) what it expects: does
    it greet without a PROXY header, take v1, v2, v2 with the SSL TLV, v2 LOCAL from this
    host, greet only once the client speaks? At most 5 connections per target, each ending
    with QUIT/LOGOUT; it stops at the first ban-like refusal.

    Examples:

      proxydiag probe mail.example.com:25 proxy.example.com:993

      proxydiag probe 10.0.0.5:10025 10.0.0.5:10993 --source 10.0.0.2

    Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 a target could
    not be probed (not resolvable, refused, unreachable, never answering).
    """
    from proxydiag.pipeline.probing import ProbeRequest
    from proxydiag.pipeline.probing import probe as run

    outcome = run(ProbeRequest(_say, targets, tls, timeout, source, None if role is Role.auto else role.value, write,
                               output, format.value))
    _finish(outcome, _view(format, output, anonymize, quiet, verbose), fail_on)


@app.command()
def logs(
    files: List[str] = typer.Argument(..., metavar="FILE...", help="Stalwart, HAProxy or nginx logs, or journalctl -o json "
                                      "exports ('-' reads standard input). Several files are one story."),
    format: Format = shared.FORMAT,
    output: Path | None = shared.OUTPUT,
    anonymize: bool = shared.ANONYMIZE,
    quiet: bool = shared.QUIET,
    verbose: bool = shared.VERBOSE,
    proxy_address: List[str] = typer.Option([], "--proxy-address", metavar="ADDR",
                                            help="An address of the proxy as Stalwart sees it (repeatable)."),
    fail_on: FailOn = shared.FAIL_ON,
) -> None:
    """Read Stalwart's, HAProxy's and nginx's logs and report the findings their lines
    show, each line quoted as file:line.

    Examples:

      proxydiag logs /opt/stalwart/logs/stalwart.log.2026-11-12 --proxy-address 10.0.0.2

      journalctl -u stalwart -u haproxy -o json | proxydiag logs -

    Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 a file could
    not be read or holds no log line proxydiag knows (the report covers the others).
    """
    from proxydiag.pipeline import commands

    outcome = commands.logs(commands.LogsRequest(_say, files, frozenset(proxy_address), output))
    _finish(outcome, _view(format, output, anonymize, quiet, verbose), fail_on)


@app.command()
def check(
    files: List[str] = typer.Argument(..., metavar="FILE...",
                                      help="Proxy configurations: haproxy.cfg, nginx.conf (includes followed), stunnel.conf, Traefik (static and "
                                      "dynamic files, CRDs, Docker labels in compose files), Caddy, Envoy, Kubernetes Services."),
    stalwart_config: Path | None = shared.STALWART,
    kind: str | None = typer.Option(None, "--kind", metavar="haproxy|nginx|stunnel|traefik|caddy|envoy|kubernetes|stalwart-proxy",
                                    help="The kind of every FILE, when its content does not tell."),
    server_address: List[str] = typer.Option([], "--server-address", metavar="ADDR",
                                             help="An address under which the proxies reach Stalwart (NAT, containers); "
                                             "repeatable. Only routes to these addresses are matched to its listeners."),
    format: Format = shared.FORMAT,
    output: Path | None = shared.OUTPUT,
    anonymize: bool = shared.ANONYMIZE,
    fail_on: FailOn = shared.FAIL_ON,
) -> None:
    """Read proxy configurations and, with --stalwart-config, Stalwart's; report the
    findings the traffic would show, citing both files, with each fix written against
    your own lines.

    Examples:

      proxydiag check /etc/haproxy/haproxy.cfg --stalwart-config /opt/stalwart/etc/config.toml

      proxydiag check /etc/nginx/nginx.conf

      proxydiag check compose.yaml traefik.yml --stalwart-config config.toml

    Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 a file
    could not be read (the others are still checked).
    """
    from proxydiag.pipeline import commands

    outcome = commands.check(commands.CheckRequest(_say, files, stalwart_config, kind, server_address, output))
    _finish(outcome, _view(format, output, anonymize, quiet=True), fail_on)


@app.command()
def decode(
    header: str = typer.Argument(
        ...,
        metavar="HEX|-",
        help="The header as hex (0d0a0d0a...), a hexdump (xxd, hexdump -C, Wireshark), a v1 line "
        "('PROXY TCP4 ...'), or '-' to read it (raw bytes or any of those) from standard input.",
    ),
    format: PlainFormat = typer.Option(PlainFormat.rich, "--format", "-F", help="rich (for people) or json (for scripts)."),
) -> None:
    """Decode one PROXY header: every field, every TLV, and every rule it breaks.

    Examples:

      proxydiag decode 0d0a0d0a000d0a515549540a2111000c...

      proxydiag decode 'PROXY TCP4 203.0.113.7 192.0.2.10 40000 25'

      xxd header.bin | proxydiag decode -

    Exit codes: 0 a valid header, 1 not a header or one that breaks the specification,
    2 the input could not be read as bytes.
    """
    from proxydiag.pipeline.decode import decode as run
    from proxydiag.pipeline.outcome import Unusable

    try:
        decoded = run(header, format is PlainFormat.json, sys.stdin.buffer)
    except Unusable as refusal:
        fail(str(refusal))
    sys.stdout.write(decoded.text)
    raise typer.Exit(EXIT_OK if decoded.valid else EXIT_FINDINGS)


@app.command()
def explain(code: str = typer.Argument(..., metavar="CODE", help="A finding code (PDnnn) or its slug (tls-flag-lost).")) -> None:
    """The finding's page: what it means, why Stalwart cares, how to confirm it, and the
    fix for HAProxy, nginx, Traefik, Caddy, Envoy, cloud load balancers and Stalwart."""
    from proxydiag.report.pages import UnknownFinding
    from proxydiag.report.pages import explain as show

    try:
        show(code, sys.stdout)
    except UnknownFinding as unknown:
        fail(str(unknown))


@app.command("rules")
def list_rules(format: PlainFormat = typer.Option(PlainFormat.rich, "--format", "-F", help="rich (a table) or json.")) -> None:
    """The findings catalog: code, slug, severity and one line each."""
    from proxydiag.report.pages import listing

    sys.stdout.write(listing(format is PlainFormat.json))


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except UsageError as usage:  # a bad option or argument: one line, and where the help is
        if type(usage).__name__ == "NoArgsIsHelpError":
            usage.show()
            sys.exit(EXIT_UNUSABLE)
        command = usage.ctx.command_path if usage.ctx is not None else "proxydiag"
        typer.echo(f"proxydiag: {usage.format_message()} (see {command} --help)", err=True)
        sys.exit(EXIT_UNUSABLE)
    except (typer.Exit, SystemExit):
        raise
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("proxydiag: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_OK)
    except Exception as error:  # a bug of ours: one line, not a traceback (PROXYDIAG_DEBUG=1 shows it)
        if os.environ.get("PROXYDIAG_DEBUG"):
            raise
        typer.echo(f"proxydiag: internal error: {type(error).__name__}: {error} (run with PROXYDIAG_DEBUG=1 for details "
                   "and please report it)", err=True)
        sys.exit(EXIT_UNUSABLE)
    sys.exit(code if isinstance(code, int) else EXIT_OK)



