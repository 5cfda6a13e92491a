"""The JSON Schema of proxydiag's documents (proxydiag/report/schema.json): a valid draft
2020-12 schema that every document validates against (each shipped capture, each real
configuration, the log samples, probe and sniff's events), that rejects a document
breaking it, and that the JSON writers enforce when PROXYDIAG_VALIDATE_JSON is set (as
tests/conftest.py sets it for every test)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import jsonschema
import pytest

from proxydiag import configs
from proxydiag.configs.stalwart import load as load_stalwart
from proxydiag.facts.expectations import EXPECT_VALUES
from proxydiag.facts.model import SCHEMA
from proxydiag.parsers.proxy_protocol import V2_FAMILIES
from proxydiag.pipeline.analysis import Settings, diagnose
from proxydiag.pipeline.check import check_configurations
from proxydiag.pipeline.logs import analyze_logs
from proxydiag.pipeline.sensor import JsonlSink, final_report, listener_of
from proxydiag.probe.steps import PLAN
from proxydiag.report import json as json_report
from proxydiag.report import schema
from proxydiag.report.anonymize import Anonymizer, anonymize
from proxydiag.report.views import told
from proxydiag.rules import catalog
from proxydiag.rules import probe as probe_judge
from proxydiag.rules.base import LOWERED_REASONS, SEVERITIES
from proxydiag.rules.logs import LogOptions
from tests.daemons import lab_address, need, wait_capturing
from tests.test_cli_start import imported_modules
from tests.test_configs_real import setups
from tests.test_logs import ban_log, connection_start, proxy_error, text_line

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted((ROOT / "captures").glob("*.pcap*"))
SERVER = lab_address("schema", 1)
PROBE = lab_address("schema", 2)


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxydiag", *args], capture_output=True, input=stdin, cwd=ROOT,
                          timeout=120)


def report_of(capture: Path) -> dict:
    return told(diagnose([str(capture)], Settings()).to_dict())


# --- the schema itself ---------------------------------------------------------------------


def test_the_schema_is_draft_2020_12_and_names_proxydiag_1():
    document = schema.load()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"].endswith(SCHEMA)
    assert schema.kinds() == {"proxydiag/1": "report_document", "proxydiag-probe/1": "probe_report",
                              "proxydiag.event/1": "event"}


def references(node) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_every_reference_names_a_definition_without_a_cycle():
    definitions = schema.load()["$defs"]
    assert {reference.removeprefix("#/$defs/") for reference in references(schema.load())} <= set(definitions)
    for name in definitions:
        schema._inlined(definitions[name])  # a cycle would recurse without end


def test_the_fixed_sets_of_the_schema_are_the_codes():
    definitions = schema.load()["$defs"]
    step = definitions["probe_step"]["properties"]
    assert tuple(definitions["severity"]["enum"]) == SEVERITIES
    assert tuple(definitions["expectation"]["properties"]["value"]["enum"]) == EXPECT_VALUES
    assert tuple(definitions["probe_step_name"]["enum"]) == PLAN
    assert tuple(definitions["proxy_config"]["properties"]["kind"]["enum"]) == configs.KINDS
    assert set(step["outcome"]["enum"]) == {probe_judge.CONNECT_FAILED, probe_judge.TLS_FAILED, probe_judge.GREETS,
                                            probe_judge.ANSWERS_HEADER, probe_judge.GREETS_AFTER_CLIENT,
                                            probe_judge.REFUSED, probe_judge.CUT, probe_judge.SILENT}
    assert set(definitions["proxy_header"]["properties"]["family"]["anyOf"][0]["enum"]) == \
        {*V2_FAMILIES.values(), "TCP4", "TCP6", "UNKNOWN"}
    assert all(re.fullmatch(definitions["code"]["pattern"], code) for code in catalog.load_pages())
    assert definitions["finding"]["properties"]["severity_lowered"]["enum"] == [None, *LOWERED_REASONS]


def test_the_schema_file_is_plain_json_any_validator_reads():
    """Without proxydiag's helpers: the file and a stock draft 2020-12 validator."""
    document = json.loads((ROOT / "proxydiag" / "report" / "schema.json").read_text())
    validator = jsonschema.Draft202012Validator(document)
    assert validator.is_valid(json.loads(run("analyze", str(CAPTURES[0]), "--format", "json", "--fail-on", "never").stdout))
    assert not validator.is_valid({"schema": SCHEMA})


# --- every document validates --------------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.name)
def test_every_shipped_capture_validates(capture):
    document = report_of(capture)
    assert document["connections"], "the capture is described"
    schema.validate(document)
    schema.validate(anonymize(copy.deepcopy(document)))


@pytest.mark.parametrize(("name", "files", "stalwart"), setups(), ids=[setup[0] for setup in setups()])
def test_every_real_configuration_validates(name, files, stalwart):
    result = check_configurations([str(path) for path in files], load_stalwart(str(stalwart)) if stalwart else None)
    document = told(result.document())
    assert document["proxy_configs"], f"{name} is read"
    schema.validate(document)


LOG_SAMPLES = {
    "ban": ban_log(),
    "proxy-error": proxy_error("invalid proxy header", tls=True),
    "crowd": "\n".join(connection_start(second, "10.0.0.2") for second in range(6)),
    "x-forwarded-missing": text_line("2026-11-12T10:00:00Z", "WARN", "X-Forwarded-For header is missing",
                                     "http.x-forwarded-missing", 'listenerId = "http", localPort = 10443'),
    "quiet": connection_start(1, "203.0.113.9"),
}


@pytest.mark.parametrize("name", sorted(LOG_SAMPLES))
def test_the_log_samples_validate(name):
    analysis = analyze_logs([name], lambda _: LOG_SAMPLES[name].encode(),
                            LogOptions(proxy_addresses=frozenset({"10.0.0.2"})), timezone.utc)
    document = told(analysis.to_dict())
    assert document["inputs"][0]["format"] == "log"
    schema.validate(document)


def test_analyze_with_a_configuration_and_a_log_beside_the_capture_validates(tmp_path):
    log = tmp_path / "stalwart.log"
    log.write_text(ban_log() + "\n")
    result = run("analyze", str(ROOT / "captures" / "haproxy-v2-smtp.pcap"), str(ROOT / "tests" / "configs_real" /
                 "stalwart-docs-haproxy.cfg"), str(log), "--format", "json", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["proxy_configs"] and document["logs"] and document["connections"]
    schema.validate(document)


@pytest.mark.parametrize("options", [(), ("--anonymize",)], ids=["streamed", "streamed-anonymized"])
def test_the_spilled_store_streams_a_valid_document(options):
    """Connections past the store's memory come back from its file as encoded text, each
    validated as it is written."""
    capture = ROOT / "captures" / "haproxy-v2-smtp.pcap"
    code = ("import sys, runpy, proxydiag.facts.store as s; s.SPILL_AFTER = 1; "
            f"sys.argv = ['proxydiag', 'analyze', {str(capture)!r}, '--format', 'json', '--fail-on', 'never', *{options!r}]; "
            "runpy.run_module('proxydiag', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["connections"]) > 1
    schema.validate(document)


def test_decode_documents_validate():
    for header in ("PROXY TCP4 192.0.2.1 192.0.2.2 1 25", "0d0a0d0a000d0a515549540a2111000ccb007107c000020a9c40001900",
                   "45484c4f", "PROXY TCP4 192.0.2.1"):
        schema.validate(json.loads(run("decode", header, "--format", "json").stdout), "decode")


# --- probe ---------------------------------------------------------------------------------


def serve_smtp_without_proxy_support(listener: socket.socket, stop: threading.Event) -> None:
    """A mail server that takes no PROXY header: it greets, and answers every line as a
    command (a header's too) until QUIT."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 mail.example.test ESMTP\r\n")
            for line in lines:
                if line.upper().startswith(b"QUIT"):
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    break
                conn.sendall(b"250-mail.example.test\r\n250 STARTTLS\r\n" if line.upper().startswith(b"EHLO")
                             else b"500 5.5.1 Invalid command.\r\n")


@contextlib.contextmanager
def running_smtp_server(port: int = 0) -> Iterator[tuple[str, int]]:
    """The server above on SERVER:`port` (0: any free port), stopped on leaving."""
    stop = threading.Event()
    with socket.create_server((SERVER, port)) as listener:
        thread = threading.Thread(target=serve_smtp_without_proxy_support, args=(listener, stop), daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[:2]
        finally:
            stop.set()
            thread.join(timeout=5)


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, int]]:
    with running_smtp_server() as address:
        yield address


def test_probe_documents_validate(smtp_server):
    address, port = smtp_server
    with socket.socket() as closed:
        closed.bind((SERVER, 0))  # bound, never listening: refused
        refused = closed.getsockname()[1]
        result = run("probe", f"{address}:{port}", f"{address}:{refused}", "--source", PROBE, "--timeout", "2",
                     "--format", "json", "--fail-on", "never")
    document = json.loads(result.stdout)
    assert result.returncode == 2, result.stderr  # one target refused
    served = document["targets"][0]
    assert served["verdict"]["greets_without_header"] and len(served["steps"]) > 1
    assert any(finding["code"] == "PD102" for finding in document["findings"])
    schema.validate(document)
    schema.validate(anonymize(document))


# --- sniff's events ------------------------------------------------------------------------


def smtp_sessions(server: tuple[str, int], count: int) -> None:
    """Sessions from PROBE, every other one opening with a v1 header the server reads as a command."""
    for number in range(count):
        with socket.create_connection(server, timeout=5, source_address=(PROBE, 0)) as client:
            if number % 2:
                client.sendall(f"PROXY TCP4 203.0.113.7 {server[0]} 40000 25\r\n".encode())
            client.recv(200)
            client.sendall(b"EHLO client.example.test\r\nQUIT\r\n")
            while client.recv(1000):
                pass


@pytest.mark.lab
@pytest.mark.parametrize("output", ["jsonl", "json"])
def test_a_live_sniff_writes_valid_events_and_report(tmp_path, output):
    need("tcpdump")  # sniff reads tcpdump's stream where it is installed, as on a proxy host
    written = tmp_path / f"sniff.{output}"
    with running_smtp_server(10025) as server:
        sniffer = subprocess.Popen([sys.executable, "-m", "proxydiag", "sniff", "-i", "lo", "-f", f"host {SERVER}",
                                    "--format", output, "-o", str(written), "--duration", "8", "--heartbeat", "2",
                                    "--fail-on", "never"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            wait_capturing(sniffer)
            smtp_sessions(server, 4)
            _, err = sniffer.communicate(timeout=60)
        finally:
            if sniffer.poll() is None:
                sniffer.kill()
                sniffer.wait()
    assert sniffer.returncode == 0, err  # 3: a line or the report broke the schema
    if output == "jsonl":
        documents = [json.loads(line) for line in written.read_text().splitlines()]
        assert {"start", "connection", "finding", "heartbeat", "stop"} == {event["event"] for event in documents}
    else:
        documents = [json.loads(written.read_text())]
        assert documents[0]["summary"]["connections"] == 4
    for document in documents:
        schema.validate(document)


def test_sniff_events_validate_line_by_line():
    analysis = diagnose([str(ROOT / "captures" / "no-header-to-proxy-listener.pcap")], Settings())
    stream = io.StringIO()
    sink = JsonlSink(anonymizer=Anonymizer())
    sink._handle = stream
    sink.start({"interface": "lo", "filter": "tcp port 25", "write": None, "metrics": None, "heartbeat_seconds": 60})
    for conn in analysis.connections:
        sink.connection(conn, [finding for finding in analysis.findings if conn.id in finding.connections])
    for finding in analysis.findings:
        sink.finding(finding, True, listener_of(analysis.connections[0]), finding.count)
    sink.heartbeat({"packets": 10, "connections": len(analysis.connections), "open_flows": 0, "capture_dropped": None,
                    "flow_table_evictions": {"half_open": 0, "idle": 0, "cap": 0}})
    sink.stop(final_report(analysis))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [event["event"] for event in events[:2]] == ["start", "connection"]
    assert {"finding", "heartbeat"} <= {event["event"] for event in events} and events[-1]["event"] == "stop"
    for event in events:
        schema.validate(event)


# --- violations are caught -----------------------------------------------------------------


def set_in(path: tuple, value):
    def mutate(document: dict) -> None:
        *parents, last = path
        target = document
        for key in parents:
            target = target[key]
        target[last] = value
    return mutate


MUTATIONS = {
    "severity outside the enum": (set_in(("findings", 0, "severity"), "fatal"), "$.findings[0].severity"),
    "code not PDnnn": (set_in(("findings", 0, "code"), "PD1"), "$.findings[0].code"),
    "a key a connection does not have": (set_in(("connections", 0, "surprise"), 1), "$.connections[0]"),
    "a port out of range": (set_in(("connections", 0, "tcp", "dst_port"), 65536), "$.connections[0].tcp.dst_port"),
    "a header version that does not exist": (set_in(("connections", 1, "proxy_header", "version"), 3),
                                             "$.connections[1].proxy_header.version"),
    "a count of the wrong type": (set_in(("summary", "errors"), "2"), "$.summary.errors"),
    "another schema": (set_in(("schema",), "proxydiag/2"), "$.schema"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_mutated_document_is_rejected_with_where(name):
    mutate, where = MUTATIONS[name]
    document = report_of(ROOT / "captures" / "haproxy-v2-smtp.pcap")
    schema.validate(document)
    mutate(document)
    with pytest.raises(schema.SchemaViolation, match=f"^{re.escape(where)}"):
        schema.validate(document)


def test_a_missing_key_is_rejected():
    document = report_of(ROOT / "captures" / "haproxy-v2-smtp.pcap")
    del document["connections"][0]["proxy_header"]
    with pytest.raises(schema.SchemaViolation, match="proxy_header"):
        schema.validate(document)


def test_the_writer_stops_with_exit_3_and_an_unfinished_document(capsys):
    document = report_of(ROOT / "captures" / "haproxy-v2-smtp.pcap")
    document["connections"][1]["tcp"]["src_port"] = -1
    streamed = {**document, "connections": (json_report.Encoded(json_report.encode(conn)) for conn in document["connections"])}
    written: list[str] = []
    with pytest.raises(SystemExit) as stopped:
        written.extend(json_report.stream_document(streamed))
    assert stopped.value.code == schema.EXIT_SCHEMA_VIOLATION
    assert "$.connections[1].tcp.src_port" in capsys.readouterr().err
    with pytest.raises(json.JSONDecodeError):
        json.loads("".join(written))


def test_the_writer_checks_what_comes_after_the_streamed_lists(capsys):
    document = report_of(ROOT / "captures" / "haproxy-v2-smtp.pcap")
    document["findings"] = json_report.Later(lambda: [{"code": "PD101"}])
    with pytest.raises(SystemExit):
        "".join(json_report.stream_document(document))
    assert "$.findings[0]" in capsys.readouterr().err


def test_a_jsonl_event_that_breaks_the_schema_stops_sniff(capsys):
    sink = JsonlSink()
    sink._handle = io.StringIO()
    with pytest.raises(SystemExit):
        sink.heartbeat({"packets": 1})
    assert "$.counters" in capsys.readouterr().err and sink._handle.getvalue() == ""


def test_the_cli_validates_what_it_writes():
    """A connection's dict that grew a key the schema does not know: the run ends with exit 3."""
    code = ("import sys, runpy, proxydiag.facts.model as m; old = m.Connection.to_dict; "
            "m.Connection.to_dict = lambda self: {**old(self), 'unknown_key': 1}; "
            f"sys.argv = ['proxydiag', 'analyze', {str(CAPTURES[0])!r}, '--format', 'json']; "
            "runpy.run_module('proxydiag', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == schema.EXIT_SCHEMA_VIOLATION, result.stderr
    assert "unknown_key" in result.stderr and result.stderr.count("\n") == 1


def test_users_never_import_the_validator(monkeypatch):
    monkeypatch.delenv("PROXYDIAG_VALIDATE_JSON")
    modules = imported_modules("analyze", str(CAPTURES[0]), "--format", "json")
    assert not {"jsonschema", "proxydiag.report.schema"} & modules
