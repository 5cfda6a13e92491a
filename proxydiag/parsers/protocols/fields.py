"""What every opening shares: its JSON shape (a dataclass's fields under their own names)
and how much of the wire it keeps, shown as printable text."""

from __future__ import annotations

import dataclasses

from proxydiag.jsontypes import JsonDict
from proxydiag.parsers.redact import printable

LINE_LIMIT = 200  # characters of one line kept for a report
MAX_ITEMS = 64  # capabilities, commands, ... kept per list


_PLAIN = frozenset({str, int, float, bool, type(None)})  # most fields: returned as they are, first


def to_json(value):
    if type(value) in _PLAIN:
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    return value


class JsonFields:
    """`to_dict()` for a dataclass: every field under its own name."""

    __slots__ = ()

    def to_dict(self) -> JsonDict:
        return {name: to_json(getattr(self, name)) for name in field_names(type(self))}


def field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, in order (`dataclasses.fields` builds them anew on each call)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(item.name for item in dataclasses.fields(cls))
    return names


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def show(raw: bytes, limit: int = LINE_LIMIT) -> str:
    """Bytes as one line of printable text (the rest escaped)."""
    return printable(raw, limit)
