"""Rendered pages of big listings, kept until their index changes (or a minute passes).

An index page with thousands of projects costs tens of milliseconds to
render; it changes only when that index (or the set of indexes and users)
changes. Commit listeners bump a generation per index; an entry rendered
under an older generation is never served. The minute's limit keeps
relative times ("3 minutes ago") honest.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any


class PageMemo:
    def __init__(self, max_entries: int = 200, max_age: float = 60.0):
        self._entries: OrderedDict[tuple, tuple[int, float, str]] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._global = 0
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.max_age = max_age

    def on_commit(self, serial: int, changes: list[dict[str, Any]]) -> None:
        with self._lock:
            for c in changes:
                if c.get("kind") in ("index", "user"):
                    self._global += 1
                if c.get("index"):
                    self._generations[c["index"]] = self._generations.get(c["index"], 0) + 1

    def generation(self, index: str) -> int:
        return self._global * 1_000_003 + self._generations.get(index, 0)

    def get(self, index: str, key: tuple) -> str | None:
        gen = self.generation(index)
        with self._lock:
            entry = self._entries.get((index, *key))
            if entry is None or entry[0] != gen or entry[1] < time.monotonic():
                return None
            self._entries.move_to_end((index, *key))
            return entry[2]

    def put(self, index: str, key: tuple, generation: int, body: str) -> None:
        """generation: as read *before* gathering the data, so a page built during a commit is dropped."""
        with self._lock:
            if generation != self.generation(index):
                return
            self._entries[(index, *key)] = (generation, time.monotonic() + self.max_age, body)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
