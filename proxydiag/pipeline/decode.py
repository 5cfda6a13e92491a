"""`decode`: one PROXY header given as hex, a hexdump, a v1 line or raw bytes, parsed and
described. Light: it starts without the analysis or the rules (tests/test_cli_start.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from proxydiag.pipeline.outcome import Unusable


@dataclass
class Decoded:
    text: str  # what to print, ending in a newline
    valid: bool  # a header that breaks no rule of the specification


def decode(header: str, as_json: bool, stdin: BinaryIO) -> Decoded:
    """`header` is the argument: the header itself, or '-' for standard input."""
    from proxydiag.parsers import proxy_protocol
    from proxydiag.parsers.userinput import InputError, bytes_from_input, bytes_from_text, read_bounded
    from proxydiag.report import json as json_report
    from proxydiag.report import text as text_report

    more = False
    try:
        if header == "-":
            raw, more = read_bounded(stdin)
            data, notes = bytes_from_input(raw)
        else:
            data, notes = bytes_from_text(header)
    except InputError as error:
        raise Unusable(str(error)) from None
    if more:
        notes.append(f"standard input goes on past {len(raw)} bytes; the rest was not read (a header is at most "
                     f"{proxy_protocol.MAX_HEADER_LENGTH} bytes)")
    result = proxy_protocol.parse(data)
    if as_json:
        return Decoded(json_report.dumps(result.to_dict(len(data))) + "\n", result.valid)
    lines = text_report.describe_parse(result)
    trailing = len(data) - result.length if result.header else 0
    if trailing > 0:
        lines.append(f"{trailing} byte(s) follow the header (the application's first bytes)")
    lines.append(f"({'; '.join(notes)})")
    return Decoded("\n".join(lines) + "\n", result.valid)
