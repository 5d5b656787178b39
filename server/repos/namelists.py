"""Big sorted project-name lists, handled a slice at a time.

An upstream index lists hundreds of thousands of projects. As Python objects (a str
per name in a list or set) 700,000 names weigh about 50 MB, and every copy made while
parsing, merging with a stage's names or rendering a page adds as much again: the
peaks, not what is kept, set a server's memory. So a list is held as one
newline-joined string (``mirror.page.parse_project_list``), and everything that walks
it does so in bounded slices (``CHUNK_NAMES`` names as objects at a time): merging
several sorted sources, and rendering the simple list page straight into its gzip
form (see ``simple_page_cache.CachedPage.compact``).
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

CHUNK_BYTES = 256 * 1024  # a slice of a newline-joined list: ~15,000 names, ~1 MB as objects
CHUNK_NAMES = 10_000


def text_chunks(text: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[list[str]]:
    """The names of a newline-joined list, as lists of at most about ``chunk_bytes`` of text."""
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", min(start + chunk_bytes, end))
        if stop < 0:
            stop = end
        yield text[start:stop].split("\n")
        start = stop + 1


def merge_sorted(sources: list[Iterable[list[str]]]) -> Iterator[list[str]]:
    """The sorted union of several sources, each sorted and without duplicates and given as
    successive lists (slices), again as lists of at most ``CHUNK_NAMES`` names."""
    sources = list(sources)
    if len(sources) == 1:
        for chunk in sources[0]:
            if chunk:
                yield chunk
        return
    out: list[str] = []
    last = None
    for name in heapq.merge(*((n for chunk in src for n in chunk) for src in sources)):
        if name != last:
            out.append(name)
            last = name
            if len(out) >= CHUNK_NAMES:
                yield out
                out = []
    if out:
        yield out


class SortedSlices:
    """Sorted, de-duplicated runs of names appended one slice at a time (while an upstream
    list is read), joined at the end into one newline-joined sorted list. Runs that already
    follow each other (the upstream's own order is sorted) are simply concatenated; others
    are merged lazily, so no list of all names is ever built."""

    def __init__(self) -> None:
        self._runs: list[list[str]] = []  # each run: newline-joined slices, in order

    def add(self, names: list[str]) -> None:
        """A slice of names (normalised, any order, duplicates allowed)."""
        if not names:
            return
        names = sorted(set(names))
        text = "\n".join(names)
        for run in self._runs:  # the common case: it follows the last run
            last = run[-1]
            if last[last.rfind("\n") + 1:] < names[0]:
                run.append(text)
                return
        self._runs.append([text])

    def text(self) -> str:
        if not self._runs:
            return ""
        if len(self._runs) == 1:
            return "\n".join(self._runs[0])
        sources = [(n for part in run for n in text_chunks(part)) for run in self._runs]
        self._runs = []
        return "\n".join("\n".join(chunk) for chunk in merge_sorted(sources))
