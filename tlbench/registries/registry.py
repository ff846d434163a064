"""A registry: entries keyed by the exact word a grid file uses, and a lookup that fails by listing them.

    DATASETS = Registry("dataset")
    DATASETS.register(Dataset(name="cifar10", ...))   # datasets.py wraps this in a decorator on the loader
    DATASETS["cifar11"]                               # UnknownName: "no dataset 'cifar11'; valid: ...; did you mean 'cifar10'?"

One registry per axis a grid file names (`datasets.DATASETS`, `archs.ARCHS`, `freezing.STRATEGIES`), in the style of
timm's `register_model` and lm-evaluation-harness's `get_model`: an entry holds everything tlbench
knows about its name, so adding a dataset or an arch is one entry (plus its test), never a row in
several parallel tables. Torch-free: the driver validates grid files against these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar


def suggest(word: str, valid: Iterable[str]) -> str:
    """'; did you mean X?' when one valid name is close to a misspelt one."""
    close = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def expected_one_of(word: Any, valid: Iterable[str]) -> str:
    valid = list(valid)
    return f"got {word!r}, expected one of {', '.join(map(str, valid))}{suggest(word, valid)}"


class Named(Protocol):
    name: str


Entry = TypeVar("Entry", bound=Named)


class UnknownName(KeyError):
    """A name no entry of a registry has; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError's own repr()s its argument, quotes and all
        return str(self.args[0])


class Registry(Generic[Entry]):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # what an entry is, for messages: "dataset", "arch"
        self._entries: dict[str, Entry] = {}

    def register(self, entry: Entry) -> Entry:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry
        return entry

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"no {self.kind} {name!r}; valid: {', '.join(self._entries)}{suggest(name, self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries.values())
