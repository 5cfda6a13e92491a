"""The command line: thin commands over the library (spec/cli.md is the contract).

Each command imports what it uses when it runs: `decode`, `explain`, `rules` and
`--help` start without the analysis, the rules, scapy or rich's Markdown (tests/test_cli_start.py).
"""

from __future__ import annotations

import errno
import io
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, NoReturn

import typer

from proxydiag import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from proxydiag.facts.model import Analysis
    from proxydiag.pipeline import evidence
    from proxydiag.pipeline.analysis import Settings
    from proxydiag.pipeline.check import CheckResult
    from proxydiag.pipeline.logs import LogAnalysis

EXIT_OK, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2
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


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2: the command could not run."""
    typer.echo(f"proxydiag: {message}", err=True)
    raise typer.Exit(EXIT_UNUSABLE)


def _write(text: str | Iterable[str], output: Path | None) -> None:
    """The report to stdout or a file; given as pieces, it is written piece by piece."""
    pieces = [text] if isinstance(text, str) else text
    if output is None:
        for piece in pieces:
            sys.stdout.write(piece)
        return
    try:
        with output.open("w") as handle:
            for piece in pieces:
                handle.write(piece)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"proxydiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version."),
) -> None:
    pass


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
MIN_CONNECTIONS = typer.Option(5, "--min-connections", help="Connections an endpoint needs before PD202 judges it.")
HEADER_DELAY = typer.Option(1.0, "--header-delay", metavar="SECONDS", help="A header later than this is PD108.")
GREETING_TIMEOUT = typer.Option(5.0, "--greeting-timeout", metavar="SECONDS", help="No greeting within this is PD402.")
INTERNAL = typer.Option(False, "--internal-clients", help="Private client addresses are expected (no PD205).")
FAIL_ON = typer.Option(FailOn.error, "--fail-on", help="Severity that makes the exit code 1.")
ANNOTATE = typer.Option(None, "--annotate", metavar="OUT.pcapng",
                        help="Also write the capture back as pcapng with the judgement inside, for Wireshark: each frame "
                        "a finding cites carries a packet comment (PD301 tls-flag-lost: ...), each connection's first "
                        "frame a one-line summary (tshark -r OUT.pcapng -Y 'frame.comment contains \"PD301\"'). "
                        "Not with --anonymize: the frames carry the original addresses.")
JOBS = typer.Option("1", "--jobs", "-j", metavar="N|auto",
                    help="Worker processes sharing the connections (default 1); auto: one per CPU (up to 4) for "
                    "captures over 50 MB. Each worker reads the whole capture: they pay only on idle cores "
                    "(bench/README.md).")


@dataclass
class ReportOptions:
    format: Format
    output: Path | None
    anonymize: bool
    quiet: bool
    verbose: bool
    fail_on: FailOn


def _settings(expect, trusted_networks, stalwart_config, ports, min_connections, header_delay, greeting_timeout,
              internal_clients) -> Settings:
    from proxydiag.configs.stalwart import ConfigError
    from proxydiag.facts.expectations import ExpectationError
    from proxydiag.pipeline.analysis import Settings

    try:
        return Settings.from_options(
            expect=expect, trusted_networks=trusted_networks, stalwart_config=stalwart_config, ports=ports,
            min_connections=min_connections, header_delay=header_delay, greeting_timeout=greeting_timeout,
            internal_clients=internal_clients,
        )
    except (ExpectationError, ConfigError, ValueError) as error:
        fail(str(error))


@app.command()
def analyze(
    files: List[str] = typer.Argument(
        None, metavar="FILE...", help="pcap or pcapng files ('-' reads standard input), and beside them proxy configurations and "
        "log files (kind told by content). Several files are one analysis (the client-to-proxy and proxy-to-server "
        "legs may be in different files)."
    ),
    format: Format = FORMAT,
    output: Path | None = OUTPUT,
    anonymize: bool = ANONYMIZE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    expect: List[str] = EXPECT,
    trusted_networks: str | None = TRUSTED,
    stalwart_config: Path | None = STALWART,
    ports: str | None = PORTS,
    min_connections: int = MIN_CONNECTIONS,
    header_delay: float = HEADER_DELAY,
    greeting_timeout: float = GREETING_TIMEOUT,
    internal_clients: bool = INTERNAL,
    fail_on: FailOn = FAIL_ON,
    jobs: str = JOBS,
    annotate: Path | None = ANNOTATE,
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
    from proxydiag.pipeline import evidence

    if not files and stalwart_config is None:
        fail("give at least one capture file (or '-' for standard input), or --stalwart-config FILE")
    from proxydiag.pipeline.analysis import diagnose
    from proxydiag.pipeline.progress import ProgressBar
    from proxydiag.pipeline.shards import ShardError

    settings = _settings(expect, trusted_networks, stalwart_config, ports, min_connections, header_delay,
                         greeting_timeout, internal_clients)
    inputs = evidence.sort_inputs(files or [], evidence.read_head)
    verdicts = _annotation_verdicts(annotate, anonymize, inputs.captures)
    workers = _jobs(jobs, inputs.captures)
    with ProgressBar() as progress:
        try:
            analysis = diagnose(inputs.captures, settings, progress.reporter(), workers,
                                verdicts.record if verdicts is not None else None)
        except ShardError as error:
            fail(str(error))
    unwritten = _annotate(annotate, inputs.captures, analysis, verdicts) if annotate and verdicts else []
    extra, unread = _other_evidence(analysis, inputs, settings) if inputs.besides_captures else (None, [])
    unread = [*unread, *unwritten]
    _report(analysis, ReportOptions(format, output, anonymize, quiet, verbose, fail_on), extra, unread)


def _annotation_verdicts(target: Path | None, anonymize: bool, captures: Sequence[str]):
    """--annotate checked before anything is read, and what judging must keep for it."""
    if target is None:
        return None
    from proxydiag.report.annotate import ConnectionVerdicts, target_problem

    if anonymize:
        fail("--annotate writes the original frames, addresses and all: it cannot be --anonymize'd; drop one of them")
    if not captures:
        fail("--annotate writes the captures back: give at least one capture file")
    problem = target_problem(target, captures)
    if problem is not None:
        fail(problem)
    return ConnectionVerdicts()


def _annotate(target: Path, captures: Sequence[str], analysis: Analysis, verdicts) -> list[str]:
    """The annotated capture written; what went wrong, as lines the report's exit code counts
    (the report is still given)."""
    from proxydiag.report.annotate import AnnotateError, annotate

    try:
        annotate(target, captures, analysis, verdicts)
    except AnnotateError as error:
        return [str(error)]
    return []


def _jobs(value: str, captures: list[str]) -> int:
    """--jobs: a positive number, or auto (proxydiag.pipeline.shards.resolve_jobs)."""
    from proxydiag.pipeline.shards import resolve_jobs

    if value != "auto" and not (value.isdigit() and int(value) > 0):
        fail(f"--jobs takes a positive number or auto, not {value!r}")
    return resolve_jobs(captures, None if value == "auto" else int(value))


def _read_logs(paths: list[str], proxies: frozenset[str]) -> LogAnalysis:
    """Log files read and judged, knowing which addresses are proxies."""
    from datetime import datetime, timezone

    from proxydiag.pipeline.logs import analyze_logs
    from proxydiag.rules.logs import LogOptions

    return analyze_logs(paths, _read_input, LogOptions(proxy_addresses=proxies),
                        datetime.now().astimezone().tzinfo or timezone.utc)


def _other_evidence(analysis: Analysis, inputs: evidence.Sorted, settings: Settings) -> tuple[dict, list[str]]:
    """The configurations and logs beside the captures, combined into the analysis; and
    one line for each file that could not be read."""
    from proxydiag.pipeline import evidence
    from proxydiag.pipeline.check import check_configurations

    checked = check_configurations(inputs.configs, settings.stalwart) if inputs.configs else None
    proxies = evidence.proxy_addresses(analysis.connections, checked.configs if checked else [])
    logs = _read_logs(inputs.logs, proxies) if inputs.logs else None
    unread = [str(error) for error in checked.errors] if checked else []
    unread += logs.errors if logs else []
    return evidence.combine(analysis, checked, logs), unread


class SniffFormat(str, Enum):
    rich = "rich"
    json = "json"
    markdown = "markdown"
    html = "html"
    jsonl = "jsonl"


@app.command()
def sniff(
    interface: str = typer.Option(..., "--interface", "-i", help="The interface to capture on (any: all of them)."),
    bpf: str | None = typer.Option(None, "--filter", "-f", metavar="BPF",
                                   help="Capture filter replacing the default (the mail ports and 10000-10999)."),
    count: int = typer.Option(0, "--count", "-c", help="Stop after this many packets (0: no limit)."),
    duration: float | None = typer.Option(None, "--duration", metavar="SECONDS", help="Stop after this long."),
    write: Path | None = typer.Option(None, "--write", "-w", metavar="FILE",
                                      help="Also write the packets to this pcap, e.g. to attach to a ticket."),
    file_size: float | None = typer.Option(None, "-C", metavar="MILLION_BYTES",
                                           help="With -w: start a new file (FILE1, FILE2, ...) once one holds more than "
                                           "this many million bytes."),
    rotate_seconds: float | None = typer.Option(None, "-G", metavar="SECONDS",
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
    heartbeat: float = typer.Option(60.0, "--heartbeat", metavar="SECONDS",
                                    help="How often the counters are written (jsonl) and exported (--metrics)."),
    anonymize: bool = ANONYMIZE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    expect: List[str] = EXPECT,
    trusted_networks: str | None = TRUSTED,
    stalwart_config: Path | None = STALWART,
    ports: str | None = PORTS,
    min_connections: int = MIN_CONNECTIONS,
    header_delay: float = HEADER_DELAY,
    greeting_timeout: float = GREETING_TIMEOUT,
    internal_clients: bool = INTERNAL,
    fail_on: FailOn = FAIL_ON,
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
    import contextlib

    from proxydiag.capture.live import MAIL_FILTER, LiveCapture, LiveError
    from proxydiag.facts.store import LIVE_HELD, ConnectionStore
    from proxydiag.pipeline import sensor
    from proxydiag.pipeline.analysis import Reader, analyze_live, judge_analysis

    settings = _settings(expect, trusted_networks, stalwart_config, ports, min_connections, header_delay,
                         greeting_timeout, internal_clients)
    if heartbeat <= 0:
        fail("--heartbeat must be a number of seconds above 0")
    if annotate is not None and (write is None or file_size or rotate_seconds):
        fail("--annotate writes the -w file back with comments: give -w FILE, without -C or -G")
    verdicts = _annotation_verdicts(annotate, anonymize, [str(write)] if write is not None else [])
    capture = LiveCapture(interface, bpf or MAIL_FILTER, count=count, duration=duration,
                          write_path=str(write) if write else None,
                          rotation=_rotation(write, file_size, rotate_seconds, file_count))
    # a sensor runs for days: connections wait for the final report on disk almost at once
    reader = Reader(settings, settings.options.services, ConnectionStore(spill_after=LIVE_HELD))
    sinks, events_file = _sensor_sinks(format, output, anonymize, metrics)
    events = sensor.SniffEvents(sinks, heartbeat, lambda: sensor.capture_counters(capture, reader.table, events.told))
    reader.then = events.live_judge(reader, settings).add  # each connection judged once, as it ends
    capture.on_tick = events.tick
    try:
        capture.start()
    except LiveError as error:
        fail(str(error))
    sensor.on_signals(capture.request_stop, events_file.request_reopen if events_file else None)
    events.start({"interface": interface, "filter": bpf or MAIL_FILTER, "write": str(write) if write else None,
                  "metrics": metrics, "heartbeat_seconds": heartbeat})
    typer.echo(f"proxydiag: capturing on {interface} ({bpf or 'mail ports'}); Ctrl-C to stop", err=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the capture, not the report
        analyze_live(capture, reader)
    analysis = reader.done()
    # the report: both passes over the whole run, as analyze does
    judge_analysis(analysis, settings, verdicts.record if verdicts is not None else None)
    unwritten = _annotate(annotate, [str(write)], analysis, verdicts) if annotate and write and verdicts else []
    events.finish(analysis)
    if format is SniffFormat.jsonl:  # the stop event was the report
        _say_what_was_unread(analysis, unwritten)
        _leave(analysis, unwritten, fail_on)
    _report(analysis, ReportOptions(Format(format.value), output, anonymize, quiet, verbose, fail_on), unread=unwritten)


def _rotation(write: Path | None, megabytes: float | None, seconds: float | None, count: int | None):
    """tcpdump's -C/-G/-W, checked."""
    from proxydiag.capture.live import Rotation

    if write is None and (megabytes or seconds or count):
        fail("-C, -G and -W rotate the -w file: give -w FILE too")
    if any(value is not None and value <= 0 for value in (megabytes, seconds, count)):
        fail("-C, -G and -W take numbers above 0")
    if count is not None and megabytes is None and seconds is None:
        fail("-W COUNT needs -C or -G: it counts the files they start")
    return Rotation(megabytes=megabytes, seconds=seconds, keep=count)


def _sensor_sinks(format: SniffFormat, output: Path | None, anonymize: bool, metrics: str | None):
    """Where sniff's events go: the findings line by line (stdout for the rich report on a
    terminal, else stderr), the jsonl stream, the exporter. Also the jsonl sink, if any."""
    from proxydiag.pipeline import sensor
    from proxydiag.report.anonymize import Anonymizer

    anonymizer = Anonymizer() if anonymize else None
    stream = sys.stdout if format is SniffFormat.rich and output is None else sys.stderr
    sinks: list[sensor.Sink] = [sensor.AnnounceSink(stream)]
    events_file = None
    try:
        if format is SniffFormat.jsonl:
            events_file = sensor.JsonlSink(output, anonymizer)
            sinks.append(events_file)
        if metrics is not None:
            host, port = sensor.parse_listen_address(metrics)
            sinks.append(sensor.MetricsSink(host, port, anonymizer))
    except (sensor.SensorError, ValueError) as error:
        fail(f"--metrics {error}" if isinstance(error, ValueError) else str(error))
    return sinks, events_file


def _report(analysis: Analysis, options: ReportOptions, extra: dict | None = None,
            unread: Sequence[str] = ()) -> None:
    """Say what could not be read, render the report, and leave with the exit code.
    `extra`: what configurations and logs beside the captures add to the document."""
    from proxydiag.pipeline.evidence import add_to_document
    from proxydiag.report import json as json_report
    from proxydiag.report.views import SHOWN_CONNECTIONS, summarised, told

    _say_what_was_unread(analysis, unread)
    if analysis.inputs and all(item.error for item in analysis.inputs) and extra is None:
        raise typer.Exit(EXIT_UNUSABLE)
    if options.format is Format.json:
        # Written connection by connection: the document of a big capture is never whole in memory.
        document = told(add_to_document(analysis.to_dict(lazy=True, encoded=not options.anonymize), extra or {}))
        if options.anonymize:  # the store is read twice: to learn every original, then to rewrite
            from proxydiag.report.anonymize import anonymize_streamed

            document = anonymize_streamed(document, lambda: analysis.connection_dicts(encoded=False))
        _write(json_report.stream_document(document), options.output)
    else:
        # The human reports summarise: the connections pass by once, the first ones stay; a
        # rich -v report reads the rest once more as it lists them.
        document = told(summarised(add_to_document(analysis.to_dict(lazy=True), extra or {})))
        if options.format in (Format.markdown, Format.html):  # the ticket names the command, anonymised like the rest
            document["command_line"] = shlex.join(["proxydiag", *sys.argv[1:]])
        listed_all = options.verbose and options.format is Format.rich
        more: Iterable[dict] = islice(analysis.connection_dicts(), SHOWN_CONNECTIONS, None) if listed_all else ()
        if options.anonymize and listed_all:
            from proxydiag.report.anonymize import anonymize_listing

            document, more = anonymize_listing(document, analysis.connection_dicts, SHOWN_CONNECTIONS)
        elif options.anonymize:
            from proxydiag.report.anonymize import anonymize as anonymize_document

            document = anonymize_document(document)
        _write(_render(document, options.format, options.output, options.quiet, options.verbose, more), options.output)
    _leave(analysis, unread, options.fail_on)


def _say_what_was_unread(analysis: Analysis, unread: Sequence[str] = ()) -> None:
    for line in unread:
        typer.echo(f"proxydiag: {line}", err=True)
    for item in analysis.inputs:
        if item.error:
            typer.echo(f"proxydiag: {item.error}", err=True)
        elif item.damaged:  # the message names the file already
            typer.echo(f"proxydiag: {item.damaged}; the analysis covers what came before", err=True)
    if analysis.unsupported_linktypes:
        typer.echo(f"proxydiag: {_unsupported_linktypes(analysis.unsupported_linktypes)}", err=True)


def _leave(analysis: Analysis, unread: Sequence[str], fail_on: FailOn) -> NoReturn:
    """The exit code: 2 when part of the input was not read, else by the findings."""
    if analysis.damaged or analysis.unsupported_linktypes or unread:
        raise typer.Exit(EXIT_UNUSABLE)
    raise typer.Exit(_findings_exit_code(analysis, fail_on))


def _unsupported_linktypes(linktypes: set[int], shown: int = 8) -> str:
    """One line, however many link types a file names."""
    listed = ", ".join(str(linktype) for linktype in sorted(linktypes)[:shown])
    more = f" and {len(linktypes) - shown} more" if len(linktypes) > shown else ""
    noun = "link type" if len(linktypes) == 1 else "link types"
    return f"{noun} {listed}{more} not supported; their packets were skipped (the analysis covers the rest)"


def _render(document: dict, format: Format, output: Path | None, quiet: bool, verbose: bool,
            more: Iterable[dict] = ()) -> Iterable[str]:
    """The report as pieces of text; `more`: the connections a rich `-v` report lists after
    the document's own, each table written as soon as it is rendered."""
    from proxydiag.report import json as json_report
    from proxydiag.report import markdown as markdown_report
    from proxydiag.report import rich as rich_report

    if format is Format.json:
        return json_report.render_document(document)
    if format is Format.markdown:
        return markdown_report.render(document, __version__, shlex.join(["proxydiag", *sys.argv[1:]]))
    if format is Format.html:
        from proxydiag.report import html as html_report

        return html_report.render(document, __version__, shlex.join(["proxydiag", *sys.argv[1:]]))
    console = _console(output)
    return (taken(console) for _ in chain(rich_report.render_in_turns(document, console, verbose, quiet, more), [None]))


def _console(output: Path | None) -> Console:
    """A console recording into a string: colour on a terminal, plain 100 columns elsewhere."""
    from rich.console import Console

    to_terminal = output is None and sys.stdout.isatty()
    console = Console(file=io.StringIO(), force_terminal=to_terminal, width=None if to_terminal else 100,
                      color_system="auto" if to_terminal else None, soft_wrap=False)
    if to_terminal:
        console.width = Console().width
    return console


def recorded(console: Console) -> str:
    """What a console made by `_console` has written."""
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def taken(console: Console) -> str:
    """What a console made by `_console` has written since last taken."""
    assert isinstance(console.file, io.StringIO)
    text = console.file.getvalue()
    console.file.seek(0)
    console.file.truncate()
    return text


def _findings_exit_code(analysis, fail_on: FailOn) -> int:
    return _exit_code_for([finding.severity for finding in analysis.findings], fail_on)


def _exit_code_for(severities: list[str], fail_on: FailOn) -> int:
    levels = {FailOn.error: {"error"}, FailOn.warning: {"error", "warning"}, FailOn.never: set()}[fail_on]
    return EXIT_FINDINGS if any(severity in levels for severity in severities) else EXIT_OK


@app.command()
def probe(
    targets: List[str] = typer.Argument(..., metavar="HOST:PORT...", help="Listeners to ask ([IPv6]:PORT for IPv6)."),
    tls: bool | None = typer.Option(None, "--tls/--no-tls", help="Speak TLS from the first byte (after any header); "
                                    "default: on the implicit-TLS ports (465, 993, 995, 443 and their 10000+ shifts)."),
    timeout: float = typer.Option(5.0, "--timeout", metavar="SECONDS", help="Per step: connecting, each answer awaited."),
    source: str | None = typer.Option(None, "--source", metavar="ADDR", help="Connect from this local address."),
    role: Role = typer.Option(Role.auto, "--role", help="What the listener is: a proxy's public front, a mail server "
                              "behind a proxy, or auto (by the port: 25, 465, 587, 143, 993, 110, 995 are fronts; "
                              "10000+ and the rest are servers)."),
    format: Format = FORMAT,
    output: Path | None = OUTPUT,
    write: Path | None = typer.Option(None, "--write", "-w", metavar="FILE",
                                      help="Also write the probe's conversations to this pcap (proxydiag analyze reads it)."),
    anonymize: bool = ANONYMIZE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    fail_on: FailOn = FAIL_ON,
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
    if format is Format.html:
        fail("probe has no --format html (its steps are no captured conversation): use rich, json or markdown")
    from proxydiag import probe as probe_module
    from proxydiag.probe import pcap as probe_pcap
    from proxydiag.probe import steps as probe_steps
    from proxydiag.report import json as json_report
    from proxydiag.report import probe as probe_report
    from proxydiag.report.views import told
    from proxydiag.rules import probe as probe_judge

    if timeout <= 0:
        fail("--timeout must be more than 0 seconds")
    try:
        parsed = [probe_steps.parse_target(text) for text in targets]
    except probe_steps.TargetError as error:
        fail(str(error))
    options = probe_module.ProbeOptions(timeout=timeout, tls=tls, source=source,
                                        role=None if role is Role.auto else role.value)
    probes, unusable = [], []
    for target in parsed:
        try:
            result = probe_module.probe_target(target, options, lambda line: typer.echo(f"proxydiag: {line}", err=True))
        except probe_module.ProbeError as error:
            unusable.append(str(error))
            continue
        probes.append(result)
        if result.error:
            unusable.append(result.error)
    for line in unusable:
        typer.echo(f"proxydiag: {line}", err=True)
    if write is not None:
        try:
            with write.open("wb") as handle:
                probe_pcap.write(handle, [record for result in probes for record in result.records])
        except OSError as error:
            fail(f"cannot write {write}: {error.strerror or error}")
    document = told(probe_judge.document(probes, {"timeout": timeout, "tls": tls, "source": source}))
    if anonymize:
        from proxydiag.report.anonymize import anonymize as anonymize_document

        document = anonymize_document(document)
    if format is Format.json:
        _write(json_report.render_document(document), output)
    elif format is Format.markdown:
        _write(probe_report.render_markdown(document, __version__, shlex.join(["proxydiag", *sys.argv[1:]])), output)
    else:
        console = _console(output)
        probe_report.render_rich(document, console, verbose=verbose, quiet=quiet)
        _write(recorded(console), output)
    if unusable:
        raise typer.Exit(EXIT_UNUSABLE)
    raise typer.Exit(_exit_code_for([finding["severity"] for finding in document["findings"]], fail_on))


@app.command()
def logs(
    files: List[str] = typer.Argument(..., metavar="FILE...", help="Stalwart, HAProxy or nginx logs, or journalctl -o json "
                                      "exports ('-' reads standard input). Several files are one story."),
    format: Format = FORMAT,
    output: Path | None = OUTPUT,
    anonymize: bool = ANONYMIZE,
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
    proxy_address: List[str] = typer.Option([], "--proxy-address", metavar="ADDR",
                                            help="An address of the proxy as Stalwart sees it (repeatable)."),
    fail_on: FailOn = FAIL_ON,
) -> None:
    """Read Stalwart's, HAProxy's and nginx's logs and report the findings their lines
    show, each line quoted as file:line.

    Examples:

      proxydiag logs /opt/stalwart/logs/stalwart.log.2026-11-12 --proxy-address 10.0.0.2

      journalctl -u stalwart -u haproxy -o json | proxydiag logs -

    Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it, 2 a file could
    not be read or holds no log line proxydiag knows (the report covers the others).
    """
    from proxydiag.report.views import told

    result = _read_logs(files, frozenset(proxy_address))
    for message in result.errors:
        typer.echo(f"proxydiag: {message}", err=True)
    if not result.reads:
        raise typer.Exit(EXIT_UNUSABLE)
    document = told(result.to_dict())
    if anonymize:
        from proxydiag.report.anonymize import anonymize as anonymize_document

        document = anonymize_document(document)
    _write(_render(document, format, output, quiet, verbose), output)
    if result.errors:
        raise typer.Exit(EXIT_UNUSABLE)
    raise typer.Exit(_findings_exit_code(result.verdict, fail_on))


def _read_input(path: str) -> bytes:
    """A log's bytes (read whole, so bounded: LOG_READ_LIMIT)."""
    from proxydiag.parsers.userinput import LOG_READ_LIMIT, read_file_bounded

    if path == "-":
        data = sys.stdin.buffer.read(LOG_READ_LIMIT + 1)
        if len(data) > LOG_READ_LIMIT:
            raise OSError(errno.EFBIG, f"standard input: larger than {LOG_READ_LIMIT >> 20} MiB: give the part that matters")
        return data
    return read_file_bounded(path, LOG_READ_LIMIT, "a log")


@app.command()
def check(
    files: List[str] = typer.Argument(..., metavar="FILE...",
                                      help="Proxy configurations: haproxy.cfg, nginx.conf (includes followed), stunnel.conf, Traefik (static and "
                                      "dynamic files, CRDs, Docker labels in compose files), Caddy, Envoy, Kubernetes Services."),
    stalwart_config: Path | None = STALWART,
    kind: str | None = typer.Option(None, "--kind", metavar="haproxy|nginx|stunnel|traefik|caddy|envoy|kubernetes|stalwart-proxy",
                                    help="The kind of every FILE, when its content does not tell."),
    server_address: List[str] = typer.Option([], "--server-address", metavar="ADDR",
                                             help="An address under which the proxies reach Stalwart (NAT, containers); "
                                             "repeatable. Only routes to these addresses are matched to its listeners."),
    format: Format = FORMAT,
    output: Path | None = OUTPUT,
    fail_on: FailOn = FAIL_ON,
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
    from proxydiag.configs.stalwart import ConfigError
    from proxydiag.configs.stalwart import load as load_stalwart
    from proxydiag.pipeline import evidence
    from proxydiag.pipeline.check import check_configurations
    from proxydiag.report.views import told

    try:
        stalwart = load_stalwart(str(stalwart_config)) if stalwart_config else None
    except ConfigError as problem:
        fail(str(problem))
    # Log files beside the configurations are read too (their findings join the report);
    # anything else goes to the configuration readers, which say what it is not.
    inputs = evidence.sort_inputs(files, evidence.read_head) if kind is None else evidence.Sorted(configs=list(files))
    result = check_configurations([*inputs.configs, *inputs.captures], stalwart, kind, server_address)
    if inputs.logs:
        _check_with_logs(result, inputs.logs, ReportOptions(format, output, False, True, False, fail_on))
    for error in result.errors:
        typer.echo(f"proxydiag: {error}", err=True)
    if result.errors and not result.configs:
        raise typer.Exit(EXIT_UNUSABLE)
    _write(_render(told(result.document()), format, output, quiet=True, verbose=False), output)
    if result.errors:
        raise typer.Exit(EXIT_UNUSABLE)
    raise typer.Exit(_findings_exit_code(result, fail_on))


def _check_with_logs(result: CheckResult, logs: list[str], options: ReportOptions) -> None:
    """`check` with log files: one report of the configurations and the log lines (as
    `analyze` gives it without a capture), and its exit code."""
    from proxydiag.facts.model import Analysis
    from proxydiag.pipeline import evidence

    analysis = Analysis()
    read = _read_logs(logs, evidence.proxy_addresses([], result.configs))
    extra = evidence.combine(analysis, result, read)
    unread = [str(error) for error in result.errors] + read.errors
    _report(analysis, options, extra, unread)


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
    from proxydiag.parsers import proxy_protocol
    from proxydiag.parsers.userinput import InputError, bytes_from_input, bytes_from_text, read_bounded
    from proxydiag.report import json as json_report
    from proxydiag.report import text as text_report

    more = False
    try:
        if header == "-":
            raw, more = read_bounded(sys.stdin.buffer)
            data, notes = bytes_from_input(raw)
        else:
            data, notes = bytes_from_text(header)
    except InputError as error:
        fail(str(error))
    if more:
        notes.append(f"standard input goes on past {len(raw)} bytes; the rest was not read (a header is at most "
                     f"{proxy_protocol.MAX_HEADER_LENGTH} bytes)")
    result = proxy_protocol.parse(data)
    if format is PlainFormat.json:
        sys.stdout.write(json_report.dumps(result.to_dict(len(data))) + "\n")
    else:
        lines = text_report.describe_parse(result)
        trailing = len(data) - result.length if result.header else 0
        if trailing > 0:
            lines.append(f"{trailing} byte(s) follow the header (the application's first bytes)")
        lines.append(f"({'; '.join(notes)})")
        sys.stdout.write("\n".join(lines) + "\n")
    raise typer.Exit(EXIT_OK if result.valid else EXIT_FINDINGS)


@app.command()
def explain(code: str = typer.Argument(..., metavar="CODE", help="A finding code (PD301) or its slug (tls-flag-lost).")) -> None:
    """The finding's page: what it means, why Stalwart cares, how to confirm it, and the
    fix for HAProxy, nginx, Traefik, Caddy, Envoy, cloud load balancers and Stalwart."""
    from proxydiag.rules import catalog

    page = catalog.find_page(code)
    if page is None:
        known = ", ".join(sorted(catalog.load_pages())) or "none installed"
        fail(f"no finding {code!r}; known codes: {known} (proxydiag rules lists them)")
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console(soft_wrap=False).print(Markdown(page.text))
    else:
        sys.stdout.write(page.text if page.text.endswith("\n") else page.text + "\n")


@app.command("rules")
def list_rules(format: PlainFormat = typer.Option(PlainFormat.rich, "--format", "-F", help="rich (a table) or json.")) -> None:
    """The findings catalog: code, slug, severity and one line each."""
    import json

    from proxydiag.rules import catalog

    # The pages and the rules name the same findings (tests/test_catalog.py): no need to load the rules.
    rows = [
        {"code": page.code, "slug": page.slug, "severity": page.severity, "summary": page.summary}
        for _, page in sorted(catalog.load_pages().items())
    ]
    if format is PlainFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        sys.stdout.write(f"{row['code']}  {row['severity']:<7}  {row['slug']:<34}  {row['summary']}\n")


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



