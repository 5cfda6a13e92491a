"""`probe`: each target asked (bounded, polite connections), the steps judged, the
conversations written to a pcap on request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxydiag.pipeline.outcome import Outcome, Say, Unusable, check_outputs, entry
from proxydiag.report.model import Report


@dataclass
class ProbeRequest:
    say: Say
    targets: Sequence[str] = ()
    tls: bool | None = None  # None: by the port
    timeout: float = 5.0
    source: str | None = None
    role: str | None = None  # front or server; None: by the port
    write: Path | None = None
    output: Path | None = None
    format: str = "rich"


@entry
def probe(request: ProbeRequest) -> Outcome:
    from proxydiag import probe as probe_module
    from proxydiag.probe import steps as probe_steps
    from proxydiag.rules import probe as probe_judge

    if request.format == "html":
        raise Unusable("probe has no --format html (its steps are no captured conversation): use rich, json or markdown")
    if request.timeout <= 0:
        raise Unusable("--timeout must be more than 0 seconds")
    check_outputs([("-o", request.output), ("-w", request.write)])
    try:
        parsed = [probe_steps.parse_target(text) for text in request.targets]
    except probe_steps.TargetError as error:
        raise Unusable(str(error)) from None
    options = probe_module.ProbeOptions(timeout=request.timeout, tls=request.tls, source=request.source, role=request.role)
    probes, unusable = [], []
    for target in parsed:
        try:
            result = probe_module.probe_target(target, options, request.say)
        except probe_module.ProbeError as error:
            unusable.append(str(error))
            continue
        probes.append(result)
        if result.error:
            unusable.append(result.error)
    for line in unusable:
        request.say(line)
    if request.write is not None:
        _write_pcap(request.write, [record for result in probes for record in result.records])
    document = probe_judge.document(probes, {"timeout": request.timeout, "tls": request.tls, "source": request.source})
    findings = [finding for result in probes if not result.error
                for finding in probe_judge.findings(result, probe_judge.verdict(result))]  # as the document lists them
    severities = [finding.severity for finding in findings]
    return Outcome(Report.of_files(document, [request.write], probe=True, findings=findings), severities, unusable)


def _write_pcap(path: Path, records: list[Any]) -> None:
    from proxydiag.outputs import open_replacing
    from proxydiag.probe import pcap as probe_pcap

    try:
        with open_replacing(path) as handle:
            probe_pcap.write(handle, records)
    except OSError as error:
        raise Unusable(f"cannot write {path}: {error.strerror or error}") from None
