"""A cached public simple page, this checkout against an older commit, side by side.

Standalone: ``python tests/bench/ab_cached_page.py --base REV [--rounds R] [--seconds S]
[--json out.json]`` with this checkout's venv (``wrk`` must be installed).

Why: S1 of the shared bench is the figure a change to the request path must not worsen,
but a full S1 A/B (tests/bench/ab_checkouts.py) takes half an hour. Most changes touch the
path of a cached page in one place (a counter, a check); this runs that path alone: both
servers started at once, each with one user, one index and one wheel, the project page
warmed, then ``wrk -t1 -c8`` on each in turn, the order alternating per round so that
neither side always runs on a warmer or quieter machine. It prints req/s medians with
min-max, the per-round ratio ours / base with its median and range, and the load average.

The older commit is exported with ``git archive`` and installed without dependencies into
a venv that sees this one's site-packages (``--system-site-packages``), so it runs with
the same libraries; a commit needing other library versions cannot be measured this way.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # tests/: support.*

from support.dists import write_wheel  # noqa: E402
from support.server import ServerProcess  # noqa: E402

PAGE = "/alice/dev/+simple/ab-bench/"


class ServerWith(ServerProcess):
    """A server run by another interpreter (the older commit's venv)."""

    def __init__(self, python: str, *args, **kw):
        super().__init__(*args, **kw)
        self.python = python

    def command(self) -> list[str]:
        cmd = super().command()
        return [self.python, *cmd[1:]]


def base_python(rev: str, workdir: Path) -> str:
    """A venv holding the checkout at ``rev``, with this venv's libraries."""
    src = workdir / "base-src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    venv = workdir / "base-venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                   check=True)
    return str(venv / "bin" / "python")


def prepare(server: ServerProcess, workdir: Path) -> None:
    alice = server.create_user("alice", "alice-pw")
    server.create_index(alice, "dev", bases=[])
    wheel = write_wheel(workdir, "ab-bench", "1.0")
    r = server.upload("alice/dev", wheel, auth=alice)
    assert r.status_code == 200, r.text
    for _ in range(3):  # rendered once, then answered from the page cache
        assert requests.get(server.url + PAGE, timeout=30).status_code == 200


def wrk(url: str, seconds: float) -> float:
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{seconds:g}s", url], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m and "Non-2xx" not in out, out
    return float(m.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the older commit (any git revision)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ab-page-") as tmp:
        work = Path(tmp)
        python = base_python(args.base, work)
        ours = ServerProcess(work / "ours").start()
        base = ServerWith(python, work / "base").start()
        try:
            for s in (ours, base):
                prepare(s, work)
            load_before = os.getloadavg()[0]
            rates: dict[str, list[float]] = {"ours": [], "base": []}
            for i in range(args.rounds):
                order = [("ours", ours), ("base", base)]
                if i % 2:
                    order.reverse()
                for name, s in order:
                    rates[name].append(wrk(s.url + PAGE, args.seconds))
            load_after = os.getloadavg()[0]
        finally:
            ours.stop()
            base.stop()
    ratios = [o / b for o, b in zip(rates["ours"], rates["base"], strict=True)]
    result = {
        "base": args.base, "rounds": args.rounds, "seconds": args.seconds,
        "ours": rates["ours"], "base_rates": rates["base"], "ratios": ratios,
        "load": [load_before, load_after],
    }
    for name in ("ours", "base"):
        r = rates[name]
        print(f"{name:5} {statistics.median(r):9.0f} req/s (min {min(r):.0f}, max {max(r):.0f})")
    print(f"ours/base per round: median x{statistics.median(ratios):.3f} "
          f"(x{min(ratios):.3f}-x{max(ratios):.3f}), load {load_before:.1f} -> {load_after:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
