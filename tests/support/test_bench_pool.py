"""The benchmark pooling tool decides whether issue 3's S2 target holds: check its arithmetic."""
from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "pool_runs.py"
_spec = importlib.util.spec_from_file_location("pool_runs", BENCH)
pool_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pool_runs)


def _s2(direct: list[float], ours: list[float], first_rep: int = 0) -> dict:
    """An S2 section as the harness writes it, with only uv cold through root/pypi measured."""
    reps = range(first_rep, first_rep + len(direct))
    return {"runs": {"uv": {
        "upstream": [{"rep": r, "cold_s": d} for r, d in zip(reps, direct, strict=True)],
        # ours listed in a different order: pairing must go by repetition number
        "devpi-ours:mirror": [{"rep": r, "cold_s": o} for r, o in reversed(list(zip(reps, ours, strict=True)))],
    }}}


def _run_dir(tmp: Path, name: str, sections: list[dict]) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "results.json").write_text(json.dumps({"s2": sections[0]}))
    for k, s2 in enumerate(sections[1:], start=2):
        (d / f"s2-run{k}").mkdir()
        (d / f"s2-run{k}" / "results.json").write_text(json.dumps({"s2": s2}))
    return d


def test_pooled_median_pairs_by_repetition_and_clusters_by_harness_run(tmp_path):
    a = _run_dir(tmp_path, "a", [_s2([1.0, 2.0], [1.1, 2.4]), _s2([1.0, 1.0], [1.3, 1.0])])
    b = _run_dir(tmp_path, "b", [_s2([0.5, 0.5, 0.5], [0.6, 0.55, 0.5], first_rep=3)])
    (a / "checkout.json").write_text(json.dumps({"commit": "1234567890", "server_tree": "abcdef0123"}))
    per_run, overall = pool_runs.pool([a, b])
    # which code each run measured is shown, and an unrecorded one says so
    assert "their server/ trees: abcdef0 (1 run), ? (1 run)." in pool_runs.render(per_run, overall)
    assert "| a | commit 1234567, server/ tree abcdef0 |" in pool_runs.render(per_run, overall)

    ratios = [1.1, 1.2, 1.3, 1.0, 1.2, 1.1, 1.0]
    (fig,) = [o for o in overall if o["figure"] == ("uv", "cold", "mirror")]
    assert fig["n"] == 7 and fig["clusters"] == 3
    assert abs(fig["median"] - statistics.median(ratios)) < 1e-9
    assert min(ratios) <= fig["lo"] <= fig["median"] <= fig["hi"] <= max(ratios)
    assert abs(per_run[0][("uv", "cold", "mirror")] - statistics.median([1.1, 1.2, 1.3, 1.0])) < 1e-9
    assert fig["runs"] == 2 and fig["runs_met"] == 2  # a: x1.15, b: x1.1
    assert [o["figure"] for o in overall] == [("uv", "cold", "mirror")]  # nothing else was measured


def test_interval_is_wide_when_harness_runs_disagree(tmp_path):
    """Ten repetitions that agree within each harness run but not across them must not
    look like ten independent measurements."""
    low = _s2([1.0] * 5, [1.05] * 5)
    high = _s2([1.0] * 5, [1.35] * 5)
    _, overall = pool_runs.pool([_run_dir(tmp_path, "r", [low, high])])
    (fig,) = overall
    assert fig["lo"] == 1.05 and fig["hi"] == 1.35
    assert "95 % interval at or below ×1.2: no" in pool_runs.render(*pool_runs.pool([tmp_path / "r"]))


def test_whole_full_runs_as_clusters(tmp_path):
    """With --clusters run, a full run's harness runs are resampled together."""
    low, high = _s2([1.0] * 5, [1.05] * 5), _s2([1.0] * 5, [1.35] * 5)
    one = _run_dir(tmp_path, "one", [low, high])
    two = _run_dir(tmp_path, "two", [_s2([1.0] * 5, [1.1] * 5)])
    _, (fig,) = pool_runs.pool([one, two], by_run=True)
    assert fig["clusters"] == 2 and fig["n"] == 15
    # resampling "one" twice gives x1.2 (its median); "two" twice x1.1; one of each x1.1
    assert fig["lo"] == pytest.approx(1.1) and fig["hi"] == pytest.approx(1.2)

