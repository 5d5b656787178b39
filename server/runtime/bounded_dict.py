"""A dict with a memory budget: the oldest entries go once the budget is spent.

A mirror keeps what it learnt from upstream in memory (pages, stored files,
names upstream does not know) so that repeated requests need no SQL. Left
unbounded, that memory grows with every project anyone ever asked for, and a
client asking for random names could grow it at will. Everything kept here is
also in SQL or can be asked again, so forgetting the oldest entry costs one
lookup later, never a wrong answer.

Each entry has a weight (a page weighs an estimate of its bytes in memory);
entries are forgotten in the order they were put, which for a cache refreshed
on expiry is close to least recently fetched. An entry heavier than the whole
budget is not kept at all (and pushes nothing out): the caller still has it for
the request at hand, and the next one looks it up again.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class BoundedDict(Generic[K, V]):
    """Reads are plain dict lookups (no lock); writes take a lock and evict."""

    def __init__(self, budget: int):
        if budget < 1:
            raise ValueError("budget must be at least 1")
        self.budget = budget
        self._values: dict[K, V] = {}
        self._weights: dict[K, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    @property
    def weight(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._values))

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._values.get(key, default)

    def values(self) -> list[V]:
        return list(self._values.values())

    def put(self, key: K, value: V, weight: int = 1) -> V:
        """Store value (replacing any entry of that key, which then counts as newest; a value
        heavier than the budget only removes the old entry)."""
        with self._lock:
            self._drop(key)
            self._insert(key, value, weight)
        return value

    def setdefault(self, key: K, value: V, weight: int = 1) -> V:
        """The entry already there, else value, stored."""
        with self._lock:
            there = self._values.get(key, _MISSING)
            if there is not _MISSING:
                return there  # type: ignore[return-value]
            self._insert(key, value, weight)
        return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            value = self._values.get(key, default)
            self._drop(key)
        return value

    def _insert(self, key: K, value: V, weight: int) -> None:
        weight = max(1, weight)
        if weight > self.budget:
            return
        self._values[key] = value
        self._weights[key] = weight
        self._total += weight
        while self._total > self.budget:  # the new entry, last, fits: it stays
            self._drop(next(iter(self._values)))

    def _drop(self, key: K) -> None:
        if key in self._values:
            del self._values[key]
            self._total -= self._weights.pop(key)
