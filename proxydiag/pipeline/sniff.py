"""`sniff`: a live capture judged as each connection ends (findings announced as they are
raised, events to the sensor's sinks), then the report of the whole run, judged in both
passes as `analyze` judges a file."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from proxydiag.pipeline.commands import traffic_outcome, unread_lines
from proxydiag.pipeline.outcome import JudgeOptions, Outcome, Say, Unusable, check_outputs, entry

if TYPE_CHECKING:
    from proxydiag.capture.live import Rotation
    from proxydiag.pipeline import sensor


@dataclass
class SniffRequest:
    say: Say
    interface: str
    bpf: str | None = None
    count: int = 0
    duration: float | None = None
    write: Path | None = None
    file_size: float | None = None  # -C, million bytes
    rotate_seconds: float | None = None  # -G
    file_count: int | None = None  # -W
    format: str = "rich"  # or json, markdown, html: the report at the end; jsonl: the events
    output: Path | None = None
    metrics: str | None = None
    heartbeat: float = 60.0
    anonymize: bool = False
    annotate: Path | None = None
    judging: JudgeOptions = field(default_factory=JudgeOptions)


@entry
def sniff(request: SniffRequest) -> Outcome:
    """Capture until --duration, --count, Ctrl-C or SIGTERM; the outcome holds the final
    report (none with jsonl: the stop event was the report)."""
    from proxydiag.capture.live import MAIL_FILTER, LiveCapture, LiveError
    from proxydiag.facts.store import LIVE_HELD, ConnectionStore
    from proxydiag.pipeline import annotation, sensor
    from proxydiag.pipeline.analysis import Reader, analyze_live, judge_analysis

    settings = request.judging.settings()
    write, bpf = request.write, request.bpf or MAIL_FILTER
    if request.heartbeat <= 0:
        raise Unusable("--heartbeat must be a number of seconds above 0")
    if request.annotate is not None and (write is None or request.file_size or request.rotate_seconds):
        raise Unusable("--annotate writes the -w file back with comments: give -w FILE, without -C or -G")
    first_file = Path(time.strftime(str(write))) if write is not None and request.rotate_seconds else write  # -G: strftime'd
    check_outputs([("-o", request.output), ("-w", first_file)], [request.judging.stalwart_config])
    verdicts = annotation.verdicts_for(request.annotate, request.anonymize, [str(write)] if write is not None else [])
    capture = LiveCapture(request.interface, bpf, count=request.count, duration=request.duration,
                          write_path=str(write) if write else None, rotation=_rotation(request))
    # a sensor runs for days: connections wait for the final report on disk almost at once
    reader = Reader(settings, settings.options.services, ConnectionStore(spill_after=LIVE_HELD))
    sinks, events_file = _sinks(request)
    events = sensor.SniffEvents(sinks, request.heartbeat,
                                lambda: sensor.capture_counters(capture, reader.table, events.told))
    reader.then = events.live_judge(reader, settings).add  # each connection judged once, as it ends
    capture.on_tick = events.tick
    try:
        capture.start()
    except LiveError as error:
        raise Unusable(str(error)) from None
    sensor.on_signals(capture.request_stop, events_file.request_reopen if events_file else None)
    events.start({"interface": request.interface, "filter": bpf, "write": str(write) if write else None,
                  "metrics": request.metrics, "heartbeat_seconds": request.heartbeat})
    request.say(f"capturing on {request.interface} ({request.bpf or 'mail ports'}); Ctrl-C to stop")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the capture, not the report
        analyze_live(capture, reader)
    analysis = reader.done()
    # the report: both passes over the whole run, as analyze does
    judge_analysis(analysis, settings, verdicts.record if verdicts is not None else None)
    unwritten = annotation.write(request.annotate, [str(write)], analysis, verdicts)
    events.finish(analysis)
    if request.format == "jsonl":  # the stop event was the report
        lines = unread_lines(analysis, unwritten)
        for line in lines:
            request.say(line)
        return Outcome(severities=[finding.severity for finding in analysis.findings], unread=lines)
    return traffic_outcome(analysis, request.say, [request.judging.stalwart_config, write], unread=unwritten)


def _rotation(request: SniffRequest) -> Rotation:
    """tcpdump's -C/-G/-W, checked."""
    from proxydiag.capture.live import Rotation

    megabytes, seconds, count = request.file_size, request.rotate_seconds, request.file_count
    if request.write is None and (megabytes or seconds or count):
        raise Unusable("-C, -G and -W rotate the -w file: give -w FILE too")
    if any(value is not None and value <= 0 for value in (megabytes, seconds, count)):
        raise Unusable("-C, -G and -W take numbers above 0")
    if count is not None and megabytes is None and seconds is None:
        raise Unusable("-W COUNT needs -C or -G: it counts the files they start")
    return Rotation(megabytes=megabytes, seconds=seconds, keep=count)


def _sinks(request: SniffRequest) -> tuple[list[sensor.Sink], sensor.JsonlSink | None]:
    """Where sniff's events go: the findings line by line (stdout for the rich report on a
    terminal, else stderr), the jsonl stream, the exporter. Also the jsonl sink, if any."""
    from proxydiag.pipeline import sensor
    from proxydiag.report.anonymize import Anonymizer

    anonymizer = Anonymizer() if request.anonymize else None
    stream = sys.stdout if request.format == "rich" and request.output is None else sys.stderr
    sinks: list[sensor.Sink] = [sensor.AnnounceSink(stream)]
    events_file = None
    try:
        if request.format == "jsonl":
            events_file = sensor.JsonlSink(request.output, anonymizer)
            sinks.append(events_file)
        if request.metrics is not None:
            host, port = sensor.parse_listen_address(request.metrics)
            sinks.append(sensor.MetricsSink(host, port, anonymizer))
    except (sensor.SensorError, ValueError) as error:
        raise Unusable(f"--metrics {error}" if isinstance(error, ValueError) else str(error)) from None
    return sinks, events_file
