"""What our server adds to a pip or uv run, with the client's own disk work taken out.

A development measurement for issue 3's S2 target, not a replacement for it
(``mirror_bench.py`` runs the benchmark the issue defines). On the benchmark
machine a uv install's wall time is mostly kernel time spent creating files:
the root filesystem is ext4 without a journal, where every new inode skips
over the inodes deleted in the last minutes (``recently_deleted`` in the
kernel's inode allocator), and the harness deletes a few thousand files after
every run. How long that takes depends on what was deleted before, so the
same uv install straight from nginx takes 0.2 s to 1.5 s, and a server's
ratio moves with it. Here the client writes into a tmpfs (its target and
its ``TMPDIR``), which takes the file creation out; the machine's other moods
stay (uv straight from nginx still took 0.25-0.87 s within one run), so read
the medians of many repetitions. It prints the milliseconds the server adds
as well as the ratios.

The server under test is started exactly as the benchmark starts it (the
shared harness's ``devpi-ours`` adapter, a fresh server dir on disk), over the
harness's nginx upstream. For each repetition: the client straight against
nginx, then cold and warm through a fresh server (the order of the two
swaps every repetition).

    python tests/bench/client_overhead.py                 # uv and pip, root/pypi, 6 repetitions
    python tests/bench/client_overhead.py --clients uv --kind dev --reps 10

Needs the harness's venvs (``python ../shared/bench/run.py --install`` or
``mirror_bench.py --install`` once). Everything runs on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mirror_bench import harness_dir


def _harness():
    sys.path.insert(0, str(harness_dir()))
    from adapters import get
    from adapters.base import Instance
    from harness import DATA
    from harness.clients import PIP_ENV, UV_ENV, pip_download_argv, uv_install_argv
    from harness.proc import run_timed
    from harness.upstream import Upstream
    return dict(get=get, Instance=Instance, DATA=DATA, PIP_ENV=PIP_ENV, UV_ENV=UV_ENV,
                pip_argv=pip_download_argv, uv_argv=uv_install_argv, run_timed=run_timed, Upstream=Upstream)


def timed_client(h: dict, client: str, index_url: str, reqs: Path, scratch: Path) -> float:
    """One client run writing only into ``scratch`` (target and TMPDIR); its wall time."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{client}-", dir=scratch))
    try:
        if client == "pip":
            argv, env = h["pip_argv"](index_url, reqs, tmp / "out"), dict(h["PIP_ENV"])
        else:
            argv, env = h["uv_argv"](index_url, reqs, tmp / "out"), dict(h["UV_ENV"])
        env["TMPDIR"] = str(tmp)
        wall, rc, tail = h["run_timed"](argv, env=env, timeout=600)
        if rc != 0:
            raise SystemExit(f"{client} against {index_url} failed (rc {rc}):\n{tail}")
        return wall
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def through_ours(h: dict, client: str, kind: str, upstream, reqs: Path, scratch: Path) -> dict[str, float]:
    """Cold and warm through a fresh server started as the benchmark starts it."""
    inst = h["Instance"](h["get"]("devpi-ours"), upstream.simple_url).fresh().start()
    try:
        url = inst.urls[kind]
        cold = timed_client(h, client, url, reqs, scratch)
        return {"cold": cold, "warm": timed_client(h, client, url, reqs, scratch)}
    finally:
        inst.remove()


def measure(h: dict, client: str, kind: str, reps: int, upstream, reqs: Path, scratch: Path) -> list[dict]:
    rows = []
    for rep in range(reps):
        row: dict[str, float] = {}
        if rep % 2:
            row.update(through_ours(h, client, kind, upstream, reqs, scratch))
        row["direct"] = timed_client(h, client, upstream.direct_simple_url, reqs, scratch)
        if not rep % 2:
            row.update(through_ours(h, client, kind, upstream, reqs, scratch))
        rows.append(row)
        print(f"  {client} {kind} rep {rep}: direct {row['direct']:.3f} s  "
              f"cold {row['cold']:.3f} s ({1000 * (row['cold'] - row['direct']):+.0f} ms, "
              f"x{row['cold'] / row['direct']:.2f})  warm {row['warm']:.3f} s "
              f"({1000 * (row['warm'] - row['direct']):+.0f} ms, x{row['warm'] / row['direct']:.2f})", flush=True)
    return rows


def summary(client: str, kind: str, rows: list[dict]) -> str:
    med = statistics.median
    parts = [f"{client} {kind}: direct {med(r['direct'] for r in rows):.3f} s"]
    for phase in ("cold", "warm"):
        added = [1000 * (r[phase] - r["direct"]) for r in rows]
        ratios = [r[phase] / r["direct"] for r in rows]
        parts.append(f"{phase} {med(added):+.0f} ms (x{med(ratios):.2f}, x{min(ratios):.2f}-x{max(ratios):.2f})")
    return "  ".join(parts) + f"  [{len(rows)} paired repetitions, medians]"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="uv,pip")
    ap.add_argument("--kind", default="mirror", choices=("mirror", "dev"), help="root/pypi or bench/dev")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--scratch", type=Path, default=Path("/dev/shm"),
                    help="a tmpfs for the clients' files (default /dev/shm)")
    a = ap.parse_args(argv)
    if not a.scratch.is_dir():
        raise SystemExit(f"--scratch {a.scratch} is not a directory")
    os.environ.setdefault("DEVPI_CHECKOUT", f"{Path(__file__).resolve().parents[2]}[server]")
    h = _harness()
    reqs = h["DATA"] / "reqs.txt"
    upstream = h["Upstream"]().start()
    try:
        results = {c: measure(h, c, a.kind, a.reps, upstream, reqs, a.scratch) for c in a.clients.split(",") if c}
    finally:
        upstream.stop()
    print()
    for client, rows in results.items():
        print(summary(client, a.kind, rows))


if __name__ == "__main__":
    main()
