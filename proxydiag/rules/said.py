"""What a rule says, typed: a hit kind holds the endpoints, addresses, names, headers and
quoted text it is about, and writes its sentence only when a view asks, through `Names`.

So the sentence never exists with the original addresses in it under `--anonymize`: the
report hands `message()` a `Names` that pseudonymises each typed value, instead of hunting
addresses in finished prose. (ruff's violations work the same way: fields, then `message()`.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from proxydiag.names import AS_THEY_ARE, AsTheyAre, Names, endpoint

__all__ = ["AS_THEY_ARE", "AsTheyAre", "Names", "Said", "Sentence", "endpoint"]


@dataclass(frozen=True)
class Said(ABC):
    """A hit kind: its fields are the typed facts the finding is about; `message` is the
    only place its sentence is written."""

    @abstractmethod
    def message(self, names: Names) -> str:
        """The sentence, every address, name, path and quoted text through `names`."""


@dataclass(frozen=True)
class Sentence(Said):
    """A sentence that names nothing (no address, host, path or quoted text): it needs no
    `Names`. Not for anything a user's evidence put in it."""

    text: str

    def message(self, names: Names) -> str:
        return self.text
