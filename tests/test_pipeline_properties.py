"""Bad input is normal input: whatever the bytes on the wire, the whole pipeline (tracking,
recognisers, rules, every report format, --anonymize) finishes without an exception."""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from proxydiag.parsers.proxy_protocol import SIGNATURE_V2, build_v1, build_v2
from proxydiag.pipeline.analysis import Settings, diagnose
from proxydiag.report import json as json_report
from proxydiag.report import markdown as markdown_report
from proxydiag.report import rich as rich_report
from proxydiag.report.anonymize import anonymize
from proxydiag.report.views import told
from tests.craft import Conversation, write_pcap

prefixes = st.sampled_from([
    b"",
    build_v2(src_addr="203.0.113.7", dst_addr="192.0.2.10", src_port=1, dst_port=25),
    build_v1("TCP4", "203.0.113.7", "192.0.2.10", 1, 25),
    SIGNATURE_V2,
    b"PROXY ",
])
chunks = st.lists(st.binary(max_size=300), max_size=4)
ports = st.sampled_from([25, 587, 465, 143, 993, 110, 995, 4190, 80, 443, 10025, 2525])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefixes, chunks, chunks, ports, st.booleans(), st.booleans())
def test_any_conversation_goes_through_every_report(tmp_path, prefix, client, server, port, reset, server_first):
    conv = Conversation(("10.0.0.5", 40000), ("10.0.0.25", port)).handshake()
    if server_first and server:
        conv.server_sends(server[0] or b"x")
    conv.client_sends(prefix + (client[0] if client else b"") or b"\r\n")
    for data in server[1:]:
        conv.server_sends(data or b"\n")
    for data in client[1:]:
        conv.client_sends(data or b"\n")
    conv.close(by="server" if reset else "client", reset=reset)
    path = write_pcap(tmp_path / "any.pcap", [conv])
    analysis = diagnose([str(path)], Settings())
    document = told(analysis.to_dict())
    for doc in (document, anonymize(document)):
        json_report.render_document(doc)
        markdown_report.render(doc, "test", "proxydiag analyze any.pcap")
        rich_report.render(doc, Console(file=io.StringIO(), width=80), verbose=True)
