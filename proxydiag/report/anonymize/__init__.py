"""--anonymize: every IP address, host name, opaque identifier and file path in the
finished document replaced by a stable pseudonym, in one pass before any renderer sees it.

A pseudonym keeps the address family and the kind of address (loopback, private,
shared CGNAT space, link-local, public), so a report still shows "a private client
behind a public proxy". The same input gets the same pseudonym everywhere in one
report. `::1` and the unspecified addresses identify nobody and stay as they are.

Besides addresses in text (next to any punctuation, after an escaped control byte,
zero-padded, with a port, as `[IPv6:...]`), the pass covers addresses inside header
hex evidence (packed, or as v1 text), TLV values that identify a client or an
account (UNIQUE_ID, custom TLVs, the AWS VPC endpoint id, AUTHORITY), host names
where a protocol puts one (single-label ones too), a value cut short by truncation,
and the input paths and the command line.

Two passes over the document: learning.py gathers every original and every name to
hide, then rewriting.py rewrites each string with pseudonyms.py's choices; patterns.py
holds what both look for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice

from proxydiag.jsontypes import JsonDict
from proxydiag.report.anonymize.learning import Learning
from proxydiag.report.anonymize.patterns import WIRE_KEYS
from proxydiag.report.anonymize.pseudonyms import Pseudonyms
from proxydiag.report.anonymize.rewriting import transform
from proxydiag.report.later import Later


def anonymize(document: JsonDict) -> JsonDict:
    """A new document (the given one is left as it was)."""
    return Anonymizer().document(document)


def anonymize_streamed(document: JsonDict, connections: Callable[[], Iterable[JsonDict]]) -> JsonDict:
    """`document` anonymised with its connections kept out of memory: `connections()` gives
    them once to learn from, then once more, rewritten one at a time as they are written
    (the document's "connections" becomes that iterator)."""
    learning = Learning(Pseudonyms())
    for key, value in document.items():
        for piece in (connections() if key == "connections" else (value,)):
            learning.learn(key, piece)
    rewrite = learning.rewriter()
    result: JsonDict = {}
    for key, value in document.items():  # rewritten in the order they are written, as `anonymize` does
        if key == "connections":
            result[key] = (transform(conn, rewrite) for conn in connections())
        elif key in WIRE_KEYS:
            result[key] = Later(partial(transform, value, rewrite)) if "connections" in result else transform(value, rewrite)
        else:
            result[key] = value
    result["anonymized"] = True
    return result


def anonymize_listing(document: JsonDict, connections: Callable[[], Iterable[JsonDict]],
                      shown: int) -> tuple[JsonDict, Iterator[JsonDict]]:
    """A summarised document (its first `shown` connections) anonymised together with every
    connection after those, for a report that lists them all: the document, whole, and
    the rest as an iterator rewritten as it is read."""
    streamed = anonymize_streamed(document, connections)
    rows = iter(streamed["connections"])
    first = list(islice(rows, shown))
    whole = {key: value.compute() if isinstance(value, Later) else value for key, value in streamed.items()}
    whole["connections"] = first
    return whole, rows


class Anonymizer:
    """Pseudonyms kept across documents: a stream of events (sniff --format jsonl, the
    metrics' labels) names each address, host and path the same way throughout. A
    pseudonym is chosen among addresses not seen so far, so one seen only later could
    coincide with it (the pseudonym ranges are documentation and reserved ones)."""

    def __init__(self) -> None:
        self.pseudonyms = Pseudonyms()

    def document(self, document: JsonDict) -> JsonDict:
        learning = Learning(self.pseudonyms)
        for key, value in document.items():
            learning.learn(key, value)
        rewrite = learning.rewriter()
        result = {key: transform(value, rewrite) if key in WIRE_KEYS else value for key, value in document.items()}
        result["anonymized"] = True
        return result

    def connection(self, connection: JsonDict) -> JsonDict:
        return self.document({"connections": [connection]})["connections"][0]

    def findings(self, findings: list[JsonDict]) -> list[JsonDict]:
        return self.document({"findings": findings})["findings"]

    def text(self, text: str) -> str:
        return self.document({"options": {"text": text}})["options"]["text"]
