"""The soak script (tests/bench/soak.py) decides whether issue 24's load criteria hold: check its
rules, and that a short run against the real server measures and reports what it should."""
from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
_spec = importlib.util.spec_from_file_location("soak_bench", BENCH)
soak = importlib.util.module_from_spec(_spec)
sys.modules["soak_bench"] = soak  # its dataclasses look their module up there
_spec.loader.exec_module(soak)


def test_only_gateway_answers_about_the_hanging_upstream_are_not_our_5xx():
    """A 502/503/504 to a reader of the hanging mirror tells the truth; any other 5xx is ours."""
    for status in (502, 503, 504):
        assert not soak.is_our_5xx("hanging", status)
        assert soak.is_our_5xx("pages", status)
        assert soak.is_our_5xx("longpolls", status)
    assert soak.is_our_5xx("hanging", 500)
    assert not soak.is_our_5xx("pages", 429)
    assert not soak.is_failure("pages", 404)
    # no answer at all fails every kind, the hanging mirror's too: every wait must be bounded
    assert soak.is_failure("hanging", "timeout")
    assert soak.is_failure("uploads", "error:ClientOSError")


def test_the_mix_is_scaled_to_the_number_of_clients():
    mix = soak.parse_mix(soak.DEFAULT_MIX, 200)
    assert mix == {"uploads": 10, "pages": 80, "files": 40, "longpolls": 40, "hanging": 30}
    odd = soak.parse_mix(soak.DEFAULT_MIX, 7)
    assert sum(odd.values()) == 7
    assert soak.parse_mix("pages=1", 5) == {"uploads": 0, "pages": 5, "files": 0, "longpolls": 0, "hanging": 0}
    with pytest.raises(SystemExit):
        soak.parse_mix("nonsense=3", 10)


def _passing() -> dict:
    kind = {"our_5xx": 0, "unanswered": 0}
    return {
        "kinds": {k: dict(kind) for k in soak.KINDS},
        "checks": {"mirror file's bytes match the sha256: ok": 10},
        "probe": {"count": 100, "not_200_or_over_1s": 0, "max_s": 0.02, "unanswered": {}},
        "uploads": {"acknowledged": 5, "before_restart": {"lost": 0}, "after_restart": {"lost": 0}},
        "server_death": {},
        "restart": {"ok": True, "summary": "exit 0"},
        "rss_mib": {"max": 150.0},
    }


@pytest.mark.parametrize("breaks", [
    lambda r: r["kinds"]["pages"].update(our_5xx=1),
    lambda r: r["kinds"]["hanging"].update(unanswered=1),
    lambda r: r["checks"].update({"uploaded file's bytes match the sha256: FAILED": 1}),
    lambda r: r.update(server_death={"code": 1, "at_s": 3.0}),
    lambda r: r["restart"].update(ok=False),
    lambda r: r["uploads"]["after_restart"].update(lost=1),
    lambda r: r["uploads"]["before_restart"].update(lost=1),
    lambda r: r["uploads"].update(after_restart=None),
    lambda r: r["probe"].update(not_200_or_over_1s=1),
    lambda r: r["probe"].update(count=0),
    lambda r: r["rss_mib"].update(max=400.1),
])
def test_each_criterion_can_fail(breaks):
    res = _passing()
    assert all(ok for *_, ok in soak.judge(res, 400))
    broken = copy.deepcopy(res)
    breaks(broken)
    assert [ok for *_, ok in soak.judge(broken, 400)].count(False) >= 1


def test_the_shown_command_leaves_out_where_the_figures_went():
    assert soak.shown_args(["--quick", "--json", "/tmp/x.json", "--server-arg=--threads=8"]) == \
        ["--quick", "--server-arg=--threads=8"]
    assert soak.shown_args(["--json=/tmp/x.json", "--write-doc"]) == ["--write-doc"]


@pytest.mark.slow
def test_a_short_run_measures_and_reports(tmp_path):
    """Seconds of a small mix against the real server: every kind is answered, uploads are
    acknowledged and found again after the restart, and the report carries the figures."""
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--duration", "4", "--clients", "10", "--idle", "20",
         "--mix", "uploads=2,pages=4,files=4", "--workdir", str(tmp_path), "--json", str(out)],
        capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    res = json.loads(out.read_text())
    assert res["uploads"]["acknowledged"] > 0
    assert res["uploads"]["after_restart"] == {"checked": res["uploads"]["acknowledged"], "lost": 0,
                                               "examples": []}
    assert res["kinds"]["pages"]["statuses"].get("200", 0) > 0
    assert res["kinds"]["files"]["statuses"].get("200", 0) > 0
    assert res["probe"]["count"] >= 4 and res["probe"]["not_200_or_over_1s"] == 0
    assert res["idle_sockets"]["opened"] >= 20
    assert res["rss_mib"]["max"] > 10
    assert soak.START in run.stdout and "all criteria met" in run.stdout
