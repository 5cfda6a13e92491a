"""JSON as proxydiag writes and reads it: a report, an event, what `to_dict()` gives, a
payload another program wrote. Its values are open (any JSON value), hence `Any`: this
is the one place that says so."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonValue: TypeAlias = Any
JsonDict: TypeAlias = dict[str, JsonValue]
