"""The batch commands, each a typed request in and an `Outcome` out: `analyze` (captures,
with any configurations and logs beside them), `check` (configurations, with any logs)
and `logs`. What could not be read is said on stderr as it is known, before the report."""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from proxydiag.pipeline.outcome import JudgeOptions, Outcome, Say, Unusable, check_outputs, entry
from proxydiag.report.model import Report

if TYPE_CHECKING:
    from proxydiag.facts.model import Analysis
    from proxydiag.pipeline import evidence
    from proxydiag.pipeline.analysis import Settings
    from proxydiag.pipeline.check import CheckResult
    from proxydiag.pipeline.evidence import Besides
    from proxydiag.pipeline.logs import LogAnalysis


@dataclass
class AnalyzeRequest:
    say: Say
    files: Sequence[str] = ()
    judging: JudgeOptions = field(default_factory=JudgeOptions)
    output: Path | None = None
    annotate: Path | None = None
    anonymize: bool = False
    jobs: str = "1"  # a positive number, or auto


@entry
def analyze(request: AnalyzeRequest) -> Outcome:
    """Read the captures (and the configurations and logs beside them) and judge them as one."""
    from proxydiag.pipeline import annotation, evidence
    from proxydiag.pipeline.analysis import diagnose
    from proxydiag.pipeline.progress import ProgressBar
    from proxydiag.pipeline.shards import ShardError

    files, stalwart_config = list(request.files), request.judging.stalwart_config
    if not files and stalwart_config is None:
        raise Unusable("give at least one capture file (or '-' for standard input), or --stalwart-config FILE")
    check_outputs([("-o", request.output), ("--annotate", request.annotate)], [*files, stalwart_config])
    settings = request.judging.settings()
    inputs = evidence.sort_inputs(files, evidence.read_head)
    verdicts = annotation.verdicts_for(request.annotate, request.anonymize, inputs.captures)
    workers = _jobs(request.jobs, inputs.captures)
    checked = _configurations(inputs.configs, settings)
    with ProgressBar() as progress:
        try:
            analysis = diagnose(inputs.captures, settings, progress.reporter(), workers,
                                verdicts.record if verdicts is not None else None)
        except ShardError as error:
            raise Unusable(str(error)) from None
    unwritten = annotation.write(request.annotate, inputs.captures, analysis, verdicts)
    besides, unread = _other_evidence(analysis, inputs, checked) if inputs.besides_captures else (None, [])
    return traffic_outcome(analysis, request.say, [*files, stalwart_config], besides, [*unread, *unwritten])


def _jobs(value: str, captures: list[str]) -> int:
    """--jobs: a positive number, or auto (proxydiag.pipeline.shards.resolve_jobs)."""
    from proxydiag.pipeline.shards import resolve_jobs

    if value != "auto" and not (value.isdigit() and int(value) > 0):
        raise Unusable(f"--jobs takes a positive number or auto, not {value!r}")
    return resolve_jobs(captures, None if value == "auto" else int(value))


def _configurations(paths: list[str], settings: Settings) -> CheckResult | None:
    """The proxy configurations beside the captures, read and judged before the captures are,
    whose judging reads their routes (the Stalwart file is judged once, with the captures)."""
    if not paths:
        return None
    from proxydiag.pipeline.check import check_configurations

    checked = check_configurations(paths, settings.stalwart, judge_stalwart_file=False)
    settings.proxy_routes = tuple(route for config in checked.configs for route in config.routes)
    return checked


def _other_evidence(analysis: Analysis, inputs: evidence.Sorted, checked: CheckResult | None) -> tuple[Besides, list[str]]:
    """The configurations and logs beside the captures, combined into the analysis; and
    one line for each file that could not be read."""
    from proxydiag.pipeline import evidence

    proxies = evidence.proxy_addresses(analysis.connections, checked.configs if checked else [])
    logs = read_logs(inputs.logs, proxies) if inputs.logs else None
    unread = [str(error) for error in checked.errors] if checked else []
    unread += logs.errors if logs else []
    return evidence.combine(analysis, checked, logs), unread


def traffic_outcome(analysis: Analysis, say: Say, given: Sequence[str | Path | None], besides: Besides | None = None,
                    unread: Sequence[str] = ()) -> Outcome:
    """What could not be read said, and the report of the analysis with what configurations
    and logs add (`besides`); none when no input could be read at all."""

    lines = unread_lines(analysis, unread)
    for line in lines:
        say(line)
    severities = [finding.severity for finding in analysis.findings]
    if analysis.inputs and all(item.error for item in analysis.inputs) and besides is None:
        return Outcome(severities=severities, unread=lines)
    document = analysis.to_dict(lazy=True)
    if besides is not None:
        document = besides.add_to(document)
    report = Report.of_files(document, given, connections=lambda encoded: analysis.connection_dicts(encoded=encoded),
                             findings=analysis.findings)
    return Outcome(report, severities, lines)


def unread_lines(analysis: Analysis, unread: Sequence[str] = ()) -> list[str]:
    """One line for each part of the input that was not read (or not written): the exit code is 2."""
    lines = list(unread)
    for item in analysis.inputs:
        if item.error:
            lines.append(item.error)
        elif item.damaged:  # the message names the file already
            lines.append(f"{item.damaged}; the analysis covers what came before")
    if analysis.unsupported_linktypes:
        lines.append(_unsupported_linktypes(analysis.unsupported_linktypes))
    return lines


def _unsupported_linktypes(linktypes: set[int], shown: int = 8) -> str:
    """One line, however many link types a file names."""
    listed = ", ".join(str(linktype) for linktype in sorted(linktypes)[:shown])
    more = f" and {len(linktypes) - shown} more" if len(linktypes) > shown else ""
    noun = "link type" if len(linktypes) == 1 else "link types"
    return f"{noun} {listed}{more} not supported; their packets were skipped (the analysis covers the rest)"


# --- check -------------------------------------------------------------------------------------


@dataclass
class CheckRequest:
    say: Say
    files: Sequence[str] = ()
    stalwart_config: Path | None = None
    kind: str | None = None
    server_addresses: Sequence[str] = ()
    output: Path | None = None


@entry
def check(request: CheckRequest) -> Outcome:
    """Proxy configurations read and judged with Stalwart's; log files beside them join the report."""
    from proxydiag.configs.stalwart import ConfigError
    from proxydiag.configs.stalwart import load as load_stalwart
    from proxydiag.pipeline import evidence
    from proxydiag.pipeline.check import check_configurations

    files, given = list(request.files), [*request.files, request.stalwart_config]
    check_outputs([("-o", request.output)], given)
    try:
        stalwart = load_stalwart(str(request.stalwart_config)) if request.stalwart_config else None
    except ConfigError as problem:
        raise Unusable(str(problem)) from None
    # Log files beside the configurations are read too (their findings join the report);
    # anything else goes to the configuration readers, which say what it is not.
    inputs = evidence.sort_inputs(files, evidence.read_head) if request.kind is None else evidence.Sorted(configs=files)
    result = check_configurations([*inputs.configs, *inputs.captures], stalwart, request.kind, request.server_addresses)
    if inputs.logs:
        return _check_with_logs(result, inputs.logs, request.say, given)
    unread = [str(error) for error in result.errors]
    for line in unread:
        request.say(line)
    severities = [finding.severity for finding in result.findings]
    if unread and not result.configs:
        return Outcome(severities=severities, unread=unread)
    return Outcome(Report.of_files(result.document(), given, findings=result.findings), severities, unread)


def _check_with_logs(result: CheckResult, logs: list[str], say: Say, given: Sequence[str | Path | None]) -> Outcome:
    """`check` with log files: one report of the configurations and the log lines (as
    `analyze` gives it without a capture)."""
    from proxydiag.facts.model import Analysis
    from proxydiag.pipeline import evidence

    analysis = Analysis()
    read = read_logs(logs, evidence.proxy_addresses([], result.configs))
    besides = evidence.combine(analysis, result, read)
    return traffic_outcome(analysis, say, given, besides, [str(error) for error in result.errors] + read.errors)


# --- logs --------------------------------------------------------------------------------------


@dataclass
class LogsRequest:
    say: Say
    files: Sequence[str] = ()
    proxy_addresses: frozenset[str] = frozenset()
    output: Path | None = None


@entry
def logs(request: LogsRequest) -> Outcome:
    """Log files read and judged together: a Stalwart log and a proxy log are one story."""
    check_outputs([("-o", request.output)], request.files)
    result = read_logs(list(request.files), request.proxy_addresses)
    for message in result.errors:
        request.say(message)
    severities = [finding.severity for finding in result.verdict.findings] if result.verdict else []
    if not result.reads:  # every file is an error
        return Outcome(severities=severities, unread=result.errors)
    findings = result.verdict.findings if result.verdict else []
    return Outcome(Report.of_files(result.to_dict(), request.files, findings=findings), severities, result.errors)


def read_logs(paths: list[str], proxies: frozenset[str]) -> LogAnalysis:
    """Log files read and judged, knowing which addresses are proxies."""
    from datetime import UTC, datetime

    from proxydiag.pipeline.logs import analyze_logs
    from proxydiag.rules.logs import LogOptions

    return analyze_logs(paths, read_log_input, LogOptions(proxy_addresses=proxies),
                        datetime.now().astimezone().tzinfo or UTC)


def read_log_input(path: str) -> bytes:
    """A log's bytes (read whole, so bounded: LOG_READ_LIMIT)."""
    from proxydiag.parsers.userinput import LOG_READ_LIMIT, read_file_bounded

    if path == "-":
        data = sys.stdin.buffer.read(LOG_READ_LIMIT + 1)
        if len(data) > LOG_READ_LIMIT:
            raise OSError(errno.EFBIG, f"standard input: larger than {LOG_READ_LIMIT >> 20} MiB: give the part that matters")
        return data
    return read_file_bounded(path, LOG_READ_LIMIT, "a log")
