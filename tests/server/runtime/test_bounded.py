"""The budgeted dict the mirror keeps its memory in (server/runtime/bounded_dict.py)."""
from __future__ import annotations

import threading

import pytest
from devpi.server.runtime.bounded_dict import BoundedDict


def test_the_oldest_entries_go_once_the_budget_is_spent():
    d: BoundedDict[str, int] = BoundedDict(budget=5)
    d.put("a", 1, weight=2)
    d.put("b", 2, weight=2)
    d.put("c", 3, weight=2)  # 6 > 5: "a" goes
    assert list(d) == ["b", "c"] and d.weight == 4
    assert d.get("a") is None and d.get("b") == 2


def test_putting_a_key_again_replaces_its_weight_and_makes_it_newest():
    d: BoundedDict[str, int] = BoundedDict(budget=4)
    d.put("a", 1, weight=2)
    d.put("b", 2, weight=2)
    d.put("a", 10, weight=1)
    assert list(d) == ["b", "a"] and d.weight == 3
    d.put("c", 3, weight=2)  # 5 > 4: the oldest is now "b"
    assert list(d) == ["a", "c"] and d.get("a") == 10


def test_an_entry_heavier_than_the_budget_is_not_kept():
    """Issue 24 (finding 8): a budget is a bound. A huge page used to be kept alone, over the
    budget; now it is returned to its caller but not kept, and pushes nothing out."""
    d: BoundedDict[str, str] = BoundedDict(budget=3)
    d.put("small", "s")
    assert d.put("huge", "h", weight=50) == "h"
    assert list(d) == ["small"] and d.weight == 1
    assert d.setdefault("huge", "h2", weight=50) == "h2" and "huge" not in d
    d.put("small", "s", weight=50)  # replaced by something too heavy: gone
    assert list(d) == [] and d.weight == 0


def test_setdefault_keeps_what_is_there_and_pop_frees_its_weight():
    d: BoundedDict[str, int] = BoundedDict(budget=10)
    assert d.setdefault("a", 1, weight=3) == 1
    assert d.setdefault("a", 2, weight=5) == 1 and d.weight == 3
    assert d.pop("a") == 1 and d.weight == 0 and "a" not in d
    assert d.pop("a", -1) == -1
    assert d.get("missing", 7) == 7


def test_weights_below_one_count_as_one():
    d: BoundedDict[int, int] = BoundedDict(budget=2)
    for i in range(5):
        d.put(i, i, weight=0)
    assert list(d) == [3, 4]


def test_a_budget_below_one_is_refused():
    with pytest.raises(ValueError):
        BoundedDict(budget=0)


def test_concurrent_writers_keep_the_books_straight():
    d: BoundedDict[tuple[int, int], int] = BoundedDict(budget=100)

    def writer(t: int) -> None:
        for i in range(2000):
            d.put((t, i % 150), i, weight=1 + i % 3)
            if i % 7 == 0:
                d.pop((t, (i * 5) % 150))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.weight <= 100
    assert d.weight == sum(d._weights[k] for k in d)
    assert len(d) == len(d._weights)
