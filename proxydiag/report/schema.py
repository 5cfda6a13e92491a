"""The JSON Schema of the documents proxydiag writes (schema.json, draft 2020-12), and a
validator for it.

`jsonschema` is a test dependency, imported only when a document is validated: the
schema itself is plain JSON that any draft 2020-12 validator reads. With
PROXYDIAG_VALIDATE_JSON set (the tests set it), the JSON writers validate what they write
and stop with exit code 3 on a violation; without it they never import this module."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from proxydiag.facts.encoded import Encoded
from proxydiag.jsontypes import JsonDict
from proxydiag.report.later import Later

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

EXIT_SCHEMA_VIOLATION = 3
SHOWN_MESSAGE = 300  # characters of a validator's message (it may quote a whole connection)


class SchemaViolation(ValueError):
    """A document that breaks the schema: where (a JSON path) and what, on one line."""


@cache
def load() -> dict[str, Any]:
    """The schema, as shipped with the package."""
    return json.loads(resources.files("proxydiag.report").joinpath("schema.json").read_text(encoding="utf-8"))


def kinds() -> dict[str, str]:
    """Each document's `schema` value -> the $defs entry that describes it."""
    definitions = load()["$defs"]
    names = [_def_name(choice["$ref"]) for choice in load()["oneOf"]]
    return {definitions[name]["properties"]["schema"]["const"]: name for name in names}


def _def_name(reference: str) -> str:
    """`#/$defs/connection` -> `connection` (the schema's references all name a $defs entry)."""
    return reference.removeprefix("#/$defs/")


def kind_of(document: Any) -> str:
    """The $defs entry for a document, from its `schema` key."""
    value = document.get("schema") if isinstance(document, dict) else None
    name = kinds().get(value) if isinstance(value, str) else None
    if name is None:
        known = ", ".join(sorted(kinds()))
        raise SchemaViolation(f"$.schema: {value!r} names none of the documents described ({known})")
    return name


def validate(document: Any, definition: str | None = None, path: str = "$") -> None:
    """Raise SchemaViolation unless `document` is valid: as the document its `schema` key
    names, or as $defs/`definition` (e.g. "decode", "connection")."""
    pointer = f"#/$defs/{definition or kind_of(document)}"
    _check(pointer, document, path)


def _check(pointer: str, instance: Any, path: str) -> None:
    from jsonschema.exceptions import best_match

    # The deepest errors say most: a key of an event's own shape rather than the event's
    # "unevaluated" key that its failed branch leaves behind.
    errors = list(_validator(pointer).iter_errors(instance))
    depth = max((len(error.absolute_path) for error in errors), default=0)
    error = best_match(error for error in errors if len(error.absolute_path) == depth)
    if error is not None:
        where = path + error.json_path[1:]
        raise SchemaViolation(f"{where}: {_shortened(error.message)}")


def _shortened(message: str) -> str:
    return message if len(message) <= SHOWN_MESSAGE else message[:SHOWN_MESSAGE] + "..."


@cache
def _validator(pointer: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    node: Any = load()
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part]
    return Draft202012Validator(_inlined(node))


def _inlined(node: Any) -> Any:
    """`node` with each $ref replaced by the definition it names (the schema has no cycle):
    jsonschema resolves a $ref at every use, which doubles the time a connection takes."""
    if isinstance(node, list):
        return [_inlined(item) for item in node]
    if not isinstance(node, dict):
        return node
    copied = {key: _inlined(value) for key, value in node.items() if key != "$ref"}
    if "$ref" not in node:
        return copied
    target = _inlined(load()["$defs"][_def_name(node["$ref"])])
    return {**copied, "allOf": [target, *copied.get("allOf", [])]} if copied else target


def _item_pointer(kind: str, key: str) -> str | None:
    """Where the schema describes each item of the document's list `key` (the kind's own
    properties, then those of the definitions it builds on)."""
    definitions = load()["$defs"]
    names = [kind, *(_def_name(part["$ref"]) for part in definitions[kind].get("allOf", []) if "$ref" in part)]
    for name in names:
        if "items" in definitions[name].get("properties", {}).get(key, {}):
            return f"#/$defs/{name}/properties/{key}/items"
    return None


# --- a document as it is streamed --------------------------------------------------------------


def validated_stream(document: JsonDict, stream: Callable[[JsonDict], Iterator[str]]) -> Iterator[str]:
    """`stream(document)`'s pieces, the document validated as they pass: each item of a
    list on its own (a large capture's connections are never held), the rest once the
    last item has passed, before the closing piece. On a violation: one line on stderr
    and exit code 3, the document left unfinished so that no reader takes it for whole."""
    try:
        kind = kind_of(document)
        watched = {key: _watched(kind, key, value) for key, value in document.items()}
        pieces = iter(stream(watched))
        held = next(pieces, None)
        for piece in pieces:
            yield held or ""
            held = piece
        validate({key: _skeleton(value) for key, value in watched.items()})
    except SchemaViolation as error:
        _fail(error)
    if held is not None:
        yield held


def validate_line(event: JsonDict) -> None:
    """One jsonl event, before it is written (exit code 3 on a violation)."""
    try:
        validate(event)
    except SchemaViolation as error:
        _fail(error)


def _fail(error: SchemaViolation) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"proxydiag: the JSON document breaks its schema (proxydiag/report/schema.json): {error}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_SCHEMA_VIOLATION)


class _CheckedItems(Iterator[Any]):
    """A list's items, each validated against the schema's item as it is read."""

    def __init__(self, pointer: str, key: str, items: Iterable[Any]) -> None:
        self.pointer, self.key, self.items, self.index = pointer, key, iter(items), 0

    def __next__(self) -> Any:
        item = next(self.items)
        _check(self.pointer, json.loads(item) if isinstance(item, Encoded) else item, f"$.{self.key}[{self.index}]")
        self.index += 1
        return item


class _RememberedLater(Later):
    """A value computed when the writer reaches it, kept for the whole document's check."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.computed: Any = None

        def remember() -> Any:
            self.computed = compute()
            return self.computed

        super().__init__(remember)


def _watched(kind: str, key: str, value: Any) -> Any:
    """The value as the writer is given it: a list with a described item shape becomes an
    iterator that validates each item (the writer streams iterators as lists)."""
    if isinstance(value, Later):
        compute = value.compute
        return _RememberedLater(lambda: _watched(kind, key, compute()))
    pointer = _item_pointer(kind, key)
    if pointer is None or isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        return value
    return _CheckedItems(pointer, key, value)


def _skeleton(value: Any) -> Any:
    """What the whole document's check sees of a value: a list whose items were checked on
    their own is empty."""
    if isinstance(value, _RememberedLater):
        value = value.computed
    return [] if isinstance(value, _CheckedItems) else value
