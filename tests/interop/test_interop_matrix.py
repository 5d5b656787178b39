"""The compatibility-matrix plugin itself: outcomes become the right cells, across processes."""
from __future__ import annotations

import json

import pytest
from interop import compat

pytestmark = pytest.mark.no_compat


def report(when: str, outcome: str, key: tuple[str, str], *, wasxfail: str | None = None,
           longrepr: str | None = None, nodeid: str = "t::x") -> pytest.TestReport:
    extra = {"wasxfail": wasxfail} if wasxfail is not None else {}
    return pytest.TestReport(nodeid, ("t", 1, "x"), {}, outcome, longrepr, when,
                             user_properties=[("compat", json.dumps(list(key)))], **extra)


KEYS = list(compat.OPERATIONS)


def test_outcomes_map_to_cells(tmp_path):
    rec = compat.Recorder()
    rec.record(report("setup", "passed", KEYS[0]))  # undecided: only the call phase counts
    rec.record(report("call", "passed", KEYS[0]))
    rec.record(report("call", "skipped", KEYS[1], wasxfail="reason: server lacks X"))
    rec.record(report("call", "failed", KEYS[2], longrepr="[XPASS(strict)] server lacks Y"))
    rec.record(report("setup", "failed", KEYS[3], longrepr="boom"))
    cells = rec.cells()
    assert cells[KEYS[0]].status == compat.WORKS
    assert (cells[KEYS[1]].status, cells[KEYS[1]].notes) == (compat.GAP, ["server lacks X"])
    assert cells[KEYS[2]].status == compat.FAILS and "remove its xfail" in cells[KEYS[2]].notes[0]
    assert cells[KEYS[3]].status == compat.FAILS
    assert not rec.complete

    # a worst-of rule for rows checked by several tests, and merging of xdist workers' files
    other = compat.Recorder()
    other.record(report("call", "failed", KEYS[0], longrepr="E assert", nodeid="t::y"))
    other.merge_into(tmp_path, "gw1")
    merged = rec.merge_into(tmp_path, "gw0")
    assert merged.cells()[KEYS[0]].status == compat.FAILS
    assert merged.cells()[KEYS[0]].tests == ["t::x", "t::y"]

    text = compat.render(merged.cells(), "9.9")
    assert "| **known gap** | server lacks X |" in text and "not run" in text
    assert f"0 of {len(KEYS)} operations work." in text


def test_complete_run_renders_every_row():
    rec = compat.Recorder()
    for key in KEYS:
        rec.record(report("call", "passed", key))
    assert rec.complete
    text = compat.render(rec.cells(), "9.9")
    assert f"{len(KEYS)} of {len(KEYS)} operations work." in text
    assert text.count("| works |") == len(KEYS)
