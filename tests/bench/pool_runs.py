"""Pool the S2 (pip and uv) repetitions of several full mirror-benchmark runs.

One full run of ``mirror_bench.py`` pools 15 repetitions (3 harness runs of 5)
and reports the median of their paired ratios to nginx. On this shared 2-CPU
machine that median still moves by about ±0.1 from one full run to the next,
so one run saying ×1.22 or ×1.08 says little about what the server costs.
This tool answers the steadier question with all the repetitions at hand:
the median paired ratio over every repetition of the given runs (the same
statistic the harness and ``mirror_bench.py`` report, with more data), and a
95 % interval for it from a cluster bootstrap. The clusters are harness runs
(five repetitions each, taken minutes apart), not single repetitions: the
machine's moods last minutes, so repetitions of one harness run are not
independent of each other, and resampling them one by one would claim more
certainty than the data holds.

    python tests/bench/pool_runs.py RUN_DIR [RUN_DIR ...]

A run dir is what ``mirror_bench.py --out`` wrote: ``results.json`` plus
``s2-run*/results.json``. If it holds ``checkout.json`` (written by
``mirror_bench.py``), the checkout's commit and the git tree of ``server/``
are shown, so runs of different server code are not pooled unawares.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

OURS, UP = "devpi-ours", "upstream"
TARGET = 1.2  # issue 3: within 1.2x of going straight to the upstream nginx
FIGURES = [(client, phase, kind) for client in ("pip", "uv") for phase in ("cold", "warm")
           for kind in ("mirror", "dev")]


def harness_runs(run_dir: Path) -> list[dict]:
    """The S2 sections of one full run: its first harness run and the extra S2-only ones."""
    paths = [run_dir / "results.json", *sorted(run_dir.glob("s2-run*/results.json"))]
    return [json.loads(p.read_text())["s2"] for p in paths if p.exists()]


def paired_ratios(s2: dict, client: str, phase: str, kind: str) -> list[float]:
    """Ours / nginx per repetition, as the harness pairs them (same repetition number)."""
    runs = s2["runs"].get(client) or {}
    direct = {r["rep"]: r.get(f"{phase}_s") for r in runs.get(UP, [])}
    out = []
    for r in runs.get(f"{OURS}:{kind}", []):
        x, y = r.get(f"{phase}_s"), direct.get(r["rep"])
        if x is not None and y:
            out.append(x / y)
    return out


def bootstrap_interval(clusters: list[list[float]], rounds: int = 10_000, seed: int = 3141) -> tuple[float, float]:
    """2.5th and 97.5th percentile of the pooled median over resampled clusters."""
    rng = random.Random(seed)  # fixed: the same data gives the same interval
    medians = []
    for _ in range(rounds):
        pick = [v for _ in clusters for v in rng.choice(clusters)]
        medians.append(statistics.median(pick))
    medians.sort()
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def checkout(run_dir: Path) -> dict:
    """What ``mirror_bench.py`` recorded about the code it ran, or {} for an older run dir."""
    info = run_dir / "checkout.json"
    return json.loads(info.read_text()) if info.exists() else {}


def checkout_label(c: dict) -> str:
    if not c:
        return "checkout not recorded"
    dirty = " (uncommitted changes)" if c.get("dirty") else ""
    return f"commit {c.get('commit', '?')[:7]}, server/ tree {c.get('server_tree', '?')[:7]}{dirty}"


def pool(run_dirs: list[Path], by_run: bool = False) -> tuple[list[dict], list[dict]]:
    """Per full run: its own pooled median per figure; over all: median, interval, verdict.
    The bootstrap resamples harness runs, or whole full runs with ``by_run`` (fewer, larger
    clusters: the more cautious interval when full runs differ more than their parts)."""
    per_run, clusters = [], {f: [] for f in FIGURES}
    for d in run_dirs:
        hruns = harness_runs(d)
        if not hruns:
            raise SystemExit(f"{d}: no results.json with an S2 section")
        c = checkout(d)
        row = {"dir": d.name, "checkout": checkout_label(c), "tree": (c.get("server_tree") or "?")[:7],
               "harness_runs": len(hruns)}
        for f in FIGURES:
            lists = [paired_ratios(s2, *f) for s2 in hruns]
            flat = [v for x in lists for v in x]
            clusters[f] += [flat] if by_run and flat else [x for x in lists if x]
            row[f] = statistics.median(flat) if flat else None
        per_run.append(row)
    overall = []
    for f in FIGURES:
        flat = [v for c in clusters[f] for v in c]
        if not flat:
            continue
        lo, hi = bootstrap_interval(clusters[f])
        overall.append({"figure": f, "n": len(flat), "clusters": len(clusters[f]),
                        "median": statistics.median(flat), "lo": lo, "hi": hi,
                        "runs_met": sum(1 for r in per_run if r[f] is not None and r[f] <= TARGET),
                        "runs": sum(1 for r in per_run if r[f] is not None)})
    return per_run, overall


def render(per_run: list[dict], overall: list[dict]) -> str:
    name = {f: f"{f[0]} {f[1]} `{'root/pypi' if f[2] == 'mirror' else 'dev'}`" for f in FIGURES}
    lines = ["| figure | repetitions (clusters) | pooled median × nginx | 95 % interval | "
             f"full runs ≤ ×{TARGET:g} |", "|---|---|---|---|---|"]
    for o in overall:
        lines.append(f"| {name[o['figure']]} | {o['n']} ({o['clusters']}) | ×{o['median']:.3f} | "
                     f"×{o['lo']:.3f}–×{o['hi']:.3f} | {o['runs_met']} of {o['runs']} |")
    lines += ["", "| full run | code | " + " | ".join(name[f] for f in FIGURES if f[1] == "cold") + " |",
              "|---|---|" + "---|" * 4]
    for r in per_run:
        cells = " | ".join("n/a" if r[f] is None else f"×{r[f]:.2f}" for f in FIGURES if f[1] == "cold")
        lines.append(f"| {r['dir']} | {r['checkout']} | {cells} |")
    met = all(o["hi"] <= TARGET for o in overall)
    trees = {t: sum(1 for r in per_run if r["tree"] == t) for t in dict.fromkeys(r["tree"] for r in per_run)}
    lines += ["", f"{len(per_run)} full runs pooled; their server/ trees: "
              + ", ".join(f"{t} ({n} run{'s' if n > 1 else ''})" for t, n in trees.items()) + ".",
              f"Every figure's 95 % interval at or below ×{TARGET:g}: {'yes' if met else 'no'}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path, help="full-run dirs written by mirror_bench.py --out")
    ap.add_argument("--clusters", choices=("harness", "run"), default="harness",
                    help="what the bootstrap resamples: harness runs (default) or whole full runs")
    a = ap.parse_args(argv)
    per_run, overall = pool(a.run_dirs, by_run=a.clusters == "run")
    print(render(per_run, overall))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
