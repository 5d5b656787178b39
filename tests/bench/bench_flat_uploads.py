"""Does an upload cost the same at the 10,000th version of a project as at the 1st? (issue 32)

    python tests/bench/bench_flat_uploads.py [--versions 10000] [--peer-versions 1000]
        [--peers devpi-server,pypiserver|none] [--block 50] [--window 500] [--out result.json]

Starts our real server (``python -m devpi.server``, as the tests do) and, side by side, the
original devpi-server and pypiserver exactly as the shared bench's adapters start and
configure them (their venvs under $BENCH_ROOT/venvs, default /tmp/bench/venvs). Each gets
one project and N versions of it as tiny valid wheels, one POST per file through twine's
own ``Repository.upload`` (the legacy upload API as ``twine upload`` sends it: multipart
form, basic auth); the time of that call is the file's cost.

Interleaved: every round uploads the next ``--block`` files to our server and the
proportional share of ``--peer-versions`` to each peer, in an order rotated per round, so
the peers' uploads are spread over our whole run and the machine's load (other work,
a peer's background indexing) falls on our first and last versions alike.

Prints, per server, the median per-file cost (with min-max) of the first and the last
``--window`` files and their ratio (target for ours: <= 1.15 at 10,000 versions), then our
server's RSS after the uploads (target: < 150 MiB) and the load average before and after.

The first and the last files are minutes apart, so a burst of other work on a shared machine
moves that ratio either way. Hence also a paired control on our server (``--control``, default
the window): after the N versions, alternately one more version of the big project and one
version of a new project, so both costs are taken at the same moments; their ratio is the cost
of the project's size alone.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: support.*

from support.dists import write_wheel  # noqa: E402
from support.server import DEAD_UPSTREAM, ServerProcess  # noqa: E402

SHARED_BENCH = Path(os.environ.get("SHARED_BENCH", "/work/shared/bench"))
PROJECT = "flatbench"
USER = ("bench", "bench")


@dataclass
class Target:
    """One running server and the twine client that uploads to it."""

    name: str
    upload_url: str
    auth: tuple[str, str]
    pids: Any  # () -> list[int]: the server's process tree, for RSS
    stop: Any
    total: int  # versions this target gets
    costs: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    repo: Any = None

    def upload(self, package: Any) -> None:
        t0 = time.perf_counter()
        resp = self.repo.upload(package)
        dt = time.perf_counter() - t0
        if resp.status_code != 200:
            self.failures.append(f"{package.basefilename}: {resp.status_code} {resp.text[:200]}")
        self.costs.append(dt)


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [pid], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def start_ours(workdir: Path, total: int) -> Target:
    srv = ServerProcess(workdir / "ours", mirror_url=DEAD_UPSTREAM).start()
    auth = srv.create_user(*USER)
    srv.create_index(auth, "dev", bases=[], volatile=True)
    return Target("devpi (ours)", f"{srv.url}/bench/dev/", USER, lambda: process_tree(srv.proc.pid),
                  srv.stop, total)


def start_peer(name: str, total: int) -> Target:
    sys.path.insert(0, str(SHARED_BENCH))
    from adapters.base import Instance  # the shared bench's own start-up and configuration

    module = {"devpi-server": "adapters.devpi_server", "pypiserver": "adapters.pypiserver"}[name]
    adapter = __import__(module, fromlist=["ADAPTER"]).ADAPTER
    if not Path(adapter.bin("python")).exists():
        raise SystemExit(f"{name}: no venv at {adapter.venv_dir()} (run the shared bench's setup.sh)")
    inst = Instance(adapter, DEAD_UPSTREAM).fresh().start()
    return Target(name, inst.urls["upload"], adapter.upload_auth, lambda: process_tree(inst.pid),
                  inst.remove, total)


def paired_control(target: Target, big: list[Any], fresh: list[Any]) -> dict[str, float] | None:
    """Alternate: one more version of the big project, one version of a new project."""
    if not big:
        return None
    big_costs: list[float] = []
    fresh_costs: list[float] = []
    with contextlib.redirect_stdout(io.StringIO()):
        for i, (b, f) in enumerate(zip(big, fresh, strict=True)):
            for package, costs in ((b, big_costs), (f, fresh_costs))[:: 1 if i % 2 else -1]:
                target.upload(package)
                costs.append(target.costs.pop())  # not part of the N versions' figures
    b_ms, f_ms = 1000 * statistics.median(big_costs), 1000 * statistics.median(fresh_costs)
    return {"pairs": len(big_costs), "big_ms": b_ms, "fresh_ms": f_ms, "ratio": b_ms / f_ms}


def window_stats(costs: list[float], window: int) -> dict[str, Any]:
    w = min(window, len(costs) // 2) or len(costs)
    first, last = costs[:w], costs[-w:]

    def summary(xs: list[float]) -> dict[str, float]:
        return {"median_ms": 1000 * statistics.median(xs), "min_ms": 1000 * min(xs), "max_ms": 1000 * max(xs)}

    f, la = summary(first), summary(last)
    return {"files": len(costs), "window": w, "first": f, "last": la, "ratio": la["median_ms"] / f["median_ms"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=10_000, help="versions uploaded to our server")
    ap.add_argument("--peer-versions", type=int, default=1000, help="versions uploaded to each peer")
    ap.add_argument("--peers", default="devpi-server,pypiserver", help="comma list, or 'none'")
    ap.add_argument("--block", type=int, default=50, help="files to our server per round")
    ap.add_argument("--window", type=int, default=500, help="first/last files compared")
    ap.add_argument("--max-ratio", type=float, default=1.15, help="ours: last/first median target")
    ap.add_argument("--max-rss-mib", type=float, default=150.0, help="ours: RSS target after the uploads")
    ap.add_argument("--control", type=int, help="paired uploads after the run (default: --window; 0: none)")
    ap.add_argument("--workdir", type=Path, help="server dirs and wheels (default: a temp dir)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    peers = [] if a.peers in ("", "none") else a.peers.split(",")
    control = a.window if a.control is None else a.control

    from twine.package import PackageFile
    from twine.repository import Repository

    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="flat-uploads-"))
    wheels_dir = workdir / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    n_wheels = max([a.versions] + [a.peer_versions] * bool(peers))
    t0 = time.perf_counter()
    packages = [PackageFile.from_filename(str(write_wheel(wheels_dir, PROJECT, f"1.{i}")), None)
                for i in range(max(n_wheels, a.versions + control))]
    fresh = [PackageFile.from_filename(str(write_wheel(wheels_dir, PROJECT + "-control", f"1.{i}")), None)
             for i in range(control)]
    print(f"{n_wheels} wheels and their twine metadata prepared in {time.perf_counter() - t0:.1f} s "
          f"under {workdir}", flush=True)

    load_before = os.getloadavg()
    targets = [start_ours(workdir, a.versions)]
    try:
        for name in peers:
            targets.append(start_peer(name, a.peer_versions))
        for t in targets:
            t.repo = Repository(t.upload_url, *t.auth, disable_progress_bar=True)
        rounds = -(-a.versions // a.block)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as sink:  # twine prints "Uploading <file>"
            for rnd in range(rounds):
                order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
                for t in order:
                    due = min(t.total, -(-(rnd + 1) * t.total // rounds))  # even share per round
                    while len(t.costs) < due:
                        t.upload(packages[len(t.costs)])
                sink.seek(0)
                sink.truncate()
                if (rnd + 1) % max(1, rounds // 20) == 0:
                    done = ", ".join(f"{t.name} {len(t.costs)} ({1000 * statistics.median(t.costs[-a.block:]):.1f} ms)"
                                     for t in targets if t.costs)
                    print(f"[{time.perf_counter() - started:7.1f} s] round {rnd + 1}/{rounds}: {done}",
                          file=sys.__stdout__, flush=True)
        ours = targets[0]
        rss = {t.name: rss_kib(t.pids()) / 1024 for t in targets}  # before the control adds files
        paired = paired_control(ours, packages[a.versions:a.versions + control], fresh)
        load_after = os.getloadavg()
        results = {t.name: window_stats(t.costs, a.window) for t in targets}
        failures = {t.name: t.failures[:5] for t in targets if t.failures}
    finally:
        for t in targets:
            t.stop()

    print(f"\nuploads of one project, one POST per file (twine's Repository.upload); load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1-min), "
          f"{load_after[1]:.2f} (5-min)")
    print(f"{'server':16s} {'files':>6s} {'first N: median (min-max) ms':>32s} "
          f"{'last N: median (min-max) ms':>32s} {'last/first':>10s} {'RSS MiB':>8s}")
    for name, r in results.items():
        f, la = r["first"], r["last"]
        print(f"{name:16s} {r['files']:6d} "
              f"{f['median_ms']:10.2f} ({f['min_ms']:.2f}-{f['max_ms']:.2f}) N={r['window']:<4d}"
              f"{la['median_ms']:10.2f} ({la['min_ms']:.2f}-{la['max_ms']:.2f}) N={r['window']:<4d}"
              f"{r['ratio']:10.3f} {rss[name]:8.1f}")
    if paired:
        print(f"paired control on ours, {control} pairs taken alternately: version {a.versions + 1}.. of the big "
              f"project {paired['big_ms']:.2f} ms, versions 1.. of a new project {paired['fresh_ms']:.2f} ms "
              f"(medians): ratio {paired['ratio']:.3f}")
    ok_ratio = results[ours.name]["ratio"] <= a.max_ratio
    ok_rss = rss[ours.name] < a.max_rss_mib
    print(f"ours: ratio {results[ours.name]['ratio']:.3f} (target <= {a.max_ratio}): {'met' if ok_ratio else 'NOT met'}; "
          f"RSS {rss[ours.name]:.1f} MiB after {len(ours.costs)} uploads (target < {a.max_rss_mib}): "
          f"{'met' if ok_rss else 'NOT met'}")
    if failures:
        print(f"FAILED uploads: {json.dumps(failures, indent=1)}")
    if a.out:
        a.out.write_text(json.dumps({
            "versions": a.versions, "peer_versions": a.peer_versions, "block": a.block, "window": a.window,
            "load_before": load_before, "load_after": load_after, "results": results, "rss_mib": rss,
            "paired_control": paired,
            "failures": failures, "costs_ms": {t.name: [round(1000 * c, 3) for c in t.costs] for t in targets},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=1))
    return 0 if ok_ratio and ok_rss and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
