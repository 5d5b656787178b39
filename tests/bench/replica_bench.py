"""Replica benchmark (issue 29, "Done when"): lag under an upload stream, and page speed
through a replica beside its primary.

One run, everything on 127.0.0.1, over the shared bench's local nginx upstream
(../shared/bench, or $BENCH_HARNESS; read-only, nothing written into it):

1. **Lag**: a primary (``--replica-secret-file``) and a replica (``--primary-url``), both
   this checkout on SQLite. Uploads of small wheels are sent to the primary on a fixed
   schedule (``--rate`` per second, default 50, for ``--seconds``, open loop: a slow
   answer does not slow the schedule, 8 connections), while a sampler asks the replica
   for its serial every 10 ms. For each upload: the time from the primary's answer (which
   names the serial) to the first sample where the replica holds that serial. Reported:
   the rate reached, upload answer times, lag in seconds (p50/p90/p99/max) and in serials
   (the primary's last answered serial minus the replica's, per sample), and how long after
   the last upload the replica held every file (``/+status`` files pending 0).
2. **Pages**: the harness's S1 page set (the 40 projects of data/projects40.txt through
   ``root/pypi``, the mirror) and 40 private projects on a stage index, warmed on both, then
   ``wrk -t2 -c16`` with pip's headers (the harness's wrk script) against the primary and
   the replica, order alternated per repetition. Medians over repetitions with min-max and
   the per-repetition paired ratio replica/primary.

    python tests/bench/replica_bench.py --quick         # ~2 min
    python tests/bench/replica_bench.py                 # ~6 min
    python tests/bench/replica_bench.py --results DIR/results.json --write-doc

It writes ``results.json`` into --out, prints a Markdown section, and with --write-doc puts it
between the ``replica-bench`` markers of doc/performance.md. A benchmark reports; it fails
(exit 1) only when a part could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # tests/: support.*
sys.path.insert(0, str(HERE))  # mirror_bench (write_doc), scaleout_bench (harness_dir, environment)

from mirror_bench import write_doc as _write_doc  # noqa: E402
from scaleout_bench import _use_harness, environment  # noqa: E402
from support.dists import wheel_bytes  # noqa: E402
from support.populate import upload  # noqa: E402
from support.server import ServerProcess  # noqa: E402

DOC = REPO / "doc" / "performance.md"
START, END = "<!-- replica-bench:start -->", "<!-- replica-bench:end -->"
SECRET = "replica-bench-secret-0123456789abcdef"
SAMPLE_S = 0.01


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def serial(url: str, session: requests.Session) -> int:
    return int(session.get(url + "/+api", timeout=30).headers["X-Devpi-Serial"])


def wait_for(check, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def start_pair(work: Path, upstream_url: str) -> tuple[ServerProcess, ServerProcess]:
    secret = work / "secret"
    secret.write_text(SECRET)
    primary = ServerProcess(work / "primary", mirror_url=upstream_url, args=("--replica-secret-file", str(secret)))
    primary.start()
    replica = ServerProcess(work / "replica", mirror_url=upstream_url,
                            args=("--primary-url", primary.url, "--replica-secret-file", str(secret)))
    replica.start()
    return primary, replica


def measure_lag(primary: ServerProcess, replica: ServerProcess, auth, rate: float, seconds: float) -> dict:
    count = int(rate * seconds)
    dists = [wheel_bytes(f"lag-{i}", "1.0") for i in range(count)]
    answers: list[tuple[int, float, float] | None] = [None] * count  # (serial, answered at, answer time)
    errors: list[str] = []
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    session = requests.Session()

    def sampler() -> None:
        while not stop.is_set():
            try:
                samples.append((time.monotonic(), serial(replica.url, session)))
            except requests.RequestException as e:
                errors.append(f"sample: {type(e).__name__}")
            time.sleep(SAMPLE_S)

    def send(i: int, at: float) -> None:
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t0 = time.monotonic()
        fn, data = dists[i]
        r = upload(primary, "alice/dev", fn, data, auth, name=f"lag-{i}", version="1.0")
        t1 = time.monotonic()
        if r.status_code != 200:
            errors.append(f"upload {r.status_code}")
            return
        answers[i] = (int(r.headers["X-Devpi-Serial"]), t1, t1 - t0)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    t_start = time.monotonic() + 0.2
    with ThreadPoolExecutor(8) as pool:
        for i in range(count):
            pool.submit(send, i, t_start + i / rate)
    sent_s = time.monotonic() - t_start
    last = max((a[0] for a in answers if a), default=0)
    wait_for(lambda: bool(samples) and samples[-1][1] >= last, 120, "the replica reaching the last serial")
    files_s = wait_for(lambda: requests.get(replica.url + "/+status", headers={"Accept": "application/json"},
                                            timeout=30).json()["result"]["replication"]["files"]["pending"] == 0,
                       300, "the replica holding every file")
    stop.set()
    thread.join()
    lags = []
    for a in answers:
        if a is None:
            continue
        s, t_answer, _ = a
        seen = next((t for t, rs in samples if rs >= s and t >= t_answer - 1.0), None)
        if seen is not None:
            lags.append(max(0.0, seen - t_answer))
    behind = []
    answered = sorted((a[1], a[0]) for a in answers if a)
    j, primary_serial = 0, 0
    for t, rs in samples:
        while j < len(answered) and answered[j][0] <= t:
            primary_serial = max(primary_serial, answered[j][1])
            j += 1
        if primary_serial:
            behind.append(max(0, primary_serial - rs))
    answer_ms = [a[2] * 1000 for a in answers if a]
    return {"uploads": count, "ok": len(answer_ms), "errors": errors[:20], "error_count": len(errors),
            "rate_asked": rate, "rate_reached": len(answer_ms) / sent_s if sent_s else None,
            "answer_ms": {"p50": pct(answer_ms, 50), "p99": pct(answer_ms, 99)},
            "lag_s": {q: pct(lags, n) for q, n in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
            "lag_serials": {q: pct([float(b) for b in behind], n) for q, n in (("p50", 50), ("p99", 99), ("max", 100))},
            "files_all_there_s_after_last": files_s, "samples": len(samples)}


def measure_pages(primary: ServerProcess, replica: ServerProcess, auth, reps: int, duration: float) -> dict:
    from harness import DATA
    from harness.wrk import run_wrk

    mirror = [p.strip() for p in (DATA / "projects40.txt").read_text().split() if p.strip()]
    stage = [f"stage-{i}" for i in range(40)]
    for name in stage:
        fn, data = wheel_bytes(name, "1.0")
        assert upload(primary, "alice/dev", fn, data, auth, name=name, version="1.0").status_code == 200
    sets = {"S1 mirror (root/pypi)": ("/root/pypi/+simple/", mirror), "stage (alice/dev)": ("/alice/dev/+simple/", stage)}
    problems: dict[str, list[str]] = {}
    for who, s in (("primary", primary), ("replica", replica)):
        for label, (base, projects) in sets.items():
            for p in projects:  # warm: the primary from the upstream, the replica from what it follows
                for _ in range(2):
                    r = requests.get(s.url + base + p + "/", headers={"Accept": "text/html"}, timeout=120)
                if r.status_code != 200:
                    problems.setdefault(who, []).append(f"{label} {p}: {r.status_code}")
    same = {}
    for label, (base, projects) in sets.items():
        same[label] = sum(requests.get(primary.url + base + p + "/", timeout=60).content ==
                          requests.get(replica.url + base + p + "/", timeout=60).content for p in projects)
    runs: dict[str, dict[str, list[dict]]] = {label: {"primary": [], "replica": []} for label in sets}
    for rep in range(reps):
        order = [("primary", primary), ("replica", replica)]
        if rep % 2:
            order.reverse()
        for label, (base, projects) in sets.items():
            for who, s in order:
                r = run_wrk([s.url + base + p + "/" for p in projects], duration=duration)
                runs[label][who].append({k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors", "requests")})
                print(f"pages rep{rep} {label:22s} {who:8s} {r['rps']:8.0f} req/s p50 {r['p50_ms']:6.2f} ms "
                      f"p99 {r['p99_ms']:6.2f} ms errors {r['errors']}", flush=True)
    return {"runs": runs, "problems": problems, "identical_pages": same, "pages_per_set": 40,
            "params": {"reps": reps, "duration_s": duration, "threads": 2, "connections": 16}}


def _med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.0f} ({min(xs):.0f}–{max(xs):.0f})" if xs else "–"


def render(res: dict) -> str:
    out = [START, "", "### Replicas (issue 29): lag and pages through a replica", ""]
    env = res.get("environment", {})
    out.append(f"`python tests/bench/replica_bench.py{' --quick' if res.get('quick') else ''}` "
               f"({env.get('date', '')}, {env.get('cpus', '?')} CPUs, load {env.get('loadavg', '?')}): "
               "primary and replica are this checkout on SQLite, same machine.")
    out.append("")
    lag = res.get("lag")
    if lag:
        ls, lser = lag["lag_s"], lag["lag_serials"]
        out += ["| lag under uploads | figure |", "|---|---|",
                f"| uploads asked / answered | {lag['uploads']} at {lag['rate_asked']:.0f}/s / {lag['ok']} "
                f"(reached {lag['rate_reached']:.1f}/s, {lag['error_count']} errors) |",
                f"| upload answer p50 / p99 | {lag['answer_ms']['p50']:.1f} / {lag['answer_ms']['p99']:.1f} ms |",
                f"| lag, seconds from the primary's answer to the replica holding the serial: p50 / p90 / p99 / max "
                f"| {ls['p50']*1000:.0f} / {ls['p90']*1000:.0f} / {ls['p99']*1000:.0f} / {ls['max']*1000:.0f} ms |",
                f"| lag in serials (sampled every 10 ms): p50 / p99 / max | {lser['p50']:.0f} / {lser['p99']:.0f} / "
                f"{lser['max']:.0f} |",
                f"| every file on the replica, after the last serial | {lag['files_all_there_s_after_last']:.1f} s |", ""]
    pages = res.get("pages")
    if pages:
        p = pages["params"]
        out += [f"Pages: `wrk -t{p['threads']} -c{p['connections']} -d{p['duration_s']:.0f}s` with pip's headers "
                f"over 40 pages, {p['reps']} repetitions, order alternated; medians (min–max), ratio per "
                "repetition replica/primary.", "",
                "| page set | primary req/s | replica req/s | ratio | primary p99 ms | replica p99 ms | identical pages |",
                "|---|---|---|---|---|---|---|"]
        for label, runs in pages["runs"].items():
            a, b = runs["primary"], runs["replica"]
            ratios = [y["rps"] / x["rps"] for x, y in zip(a, b, strict=True) if x["rps"]]
            out.append(f"| {label} | {_med([r['rps'] for r in a])} | {_med([r['rps'] for r in b])} | "
                       f"×{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | "
                       f"{statistics.median([r['p99_ms'] for r in a]):.1f} | "
                       f"{statistics.median([r['p99_ms'] for r in b]):.1f} | "
                       f"{pages['identical_pages'][label]}/{pages['pages_per_set']} |")
        if pages.get("problems"):
            out += ["", f"Warm-up problems: {json.dumps(pages['problems'])[:600]}"]
        out.append("")
    for part, why in res.get("errors", {}).items():
        out.append(f"- **{part} did not run**: {why}")
    out += ["", END]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 s of uploads, pages 2 × 3 s")
    ap.add_argument("--rate", type=float, default=50.0, help="uploads per second (default 50)")
    ap.add_argument("--seconds", type=float, help="seconds of uploads (default 20; 5 with --quick)")
    ap.add_argument("--reps", type=int, help="page repetitions (default 5; 2 with --quick)")
    ap.add_argument("--duration", type=float, help="seconds of wrk per run (default 10; 3 with --quick)")
    ap.add_argument("--only", default="lag,pages", help="parts: lag,pages")
    ap.add_argument("--out", type=Path, help="results dir (default: a new dir under the system temp dir)")
    ap.add_argument("--results", type=Path, help="re-render from an existing results.json; run nothing")
    ap.add_argument("--write-doc", action="store_true", help="replace the replica-bench block in doc/performance.md")
    a = ap.parse_args(argv)
    if a.results:
        res = json.loads(a.results.read_text())
    else:
        _use_harness()
        from harness import BENCH_ROOT
        from harness.upstream import Upstream

        parts = {p.strip() for p in a.only.split(",") if p.strip()}
        out = a.out or Path(tempfile.gettempdir()) / f"devpi-replica-bench-{time.strftime('%Y%m%d-%H%M%S')}"
        out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="replica-bench-", dir=out))
        res = {"environment": environment(), "quick": a.quick, "errors": {}}
        upstream = Upstream(root=BENCH_ROOT / f"replica-{os.getpid()}" / "upstream")
        upstream.start()
        primary = replica = None
        try:
            primary, replica = start_pair(work, upstream.simple_url)
            auth = primary.create_user("alice", "alice-pw")
            primary.create_index(auth, "dev", bases=["root/pypi"])
            if "lag" in parts:
                try:
                    res["lag"] = measure_lag(primary, replica, auth, a.rate, a.seconds or (5 if a.quick else 20))
                except Exception as e:
                    res["errors"]["lag"] = f"{type(e).__name__}: {e}"
            if "pages" in parts:
                try:
                    res["pages"] = measure_pages(primary, replica, auth, a.reps or (2 if a.quick else 5),
                                                 a.duration or (3 if a.quick else 10))
                except Exception as e:
                    res["errors"]["pages"] = f"{type(e).__name__}: {e}"
        finally:
            for s in (replica, primary):
                if s is not None:
                    s.stop()
            upstream.stop()
        (out / "results.json").write_text(json.dumps(res, indent=1))
        print(f"results -> {out / 'results.json'}")
    section = render(res)
    print(section)
    if a.write_doc:
        _write_doc(section, START, END)
        print(f"wrote {DOC}")
    return 1 if res.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
