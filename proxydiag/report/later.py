"""A value of a document computed only when the writer reaches it: the values after the
connections of a streamed document depend on them (anonymisation numbers pseudonyms in
document order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Later:
    """A value computed only when its turn comes to be written (after the keys before it)."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute
