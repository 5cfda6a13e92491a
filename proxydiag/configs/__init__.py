"""Proxy configurations: readers (text -> ProxyConfig), one per kind, and the detection
of a file's kind (`kinds.py`). Judging them is the rules' (rules/crosscheck.py);
`pipeline/check.py` composes reading and judging for `proxydiag check`.

The package itself imports nothing: `analyze` of a capture imports the Stalwart
configuration's model (`configs.stalwart`) and must not pay for every reader (crossplane,
yaml, about 60 ms) when no configuration is given. The names below come from `kinds.py`
at first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxydiag.configs.kinds import DETECTORS, KINDS, NOT_READ, detect_kind, kind_of, load, traefik_entry_points

__all__ = ["DETECTORS", "KINDS", "NOT_READ", "detect_kind", "kind_of", "load", "traefik_entry_points"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from proxydiag.configs import kinds

    return getattr(kinds, name)
