"""Side-by-side A/B of this checkout against an older commit, through the shared bench's S2.

Why: the shared bench compares servers within one run, but "no worse than before a change"
was judged against figures pooled from runs taken days apart, under other loads, and the
ratio to nginx grows with the machine's load for any Python server. Running the old commit
as one more server in the same runs gives per-repetition paired ratios (this checkout / the
old one) that the load affects alike.

    python tests/bench/ab_checkouts.py --base e4ea088 --runs 3 --out /tmp/ab
    python tests/bench/ab_checkouts.py --pool /tmp/ab/run1/s2.json /tmp/ab/run2/s2.json

It exports the old commit with `git archive` into OUT/base-src, copies the shared bench
(never edited in place) into OUT/bench with one extra adapter, `devpi-base`, installs that
commit into the bench's venv dir, runs `run.py --servers devpi-ours,devpi-base --only S2`
(or `--only S1,S2`: S1's tables are then in each run's RESULTS.md, side by side)
RUNS times and prints, per client / index / phase, the median and range of the paired
ratios, and both servers' pooled ratios to the upstream nginx.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_BENCH = ROOT.parent / "shared" / "bench"
ADAPTER = '''"""Written by tests/bench/ab_checkouts.py: the checkout at {rev} as a second devpi."""
from .devpi_checkout import OurDevpi


class BaseDevpi(OurDevpi):
    name = "devpi-base"
    venv = "devpi-base"
    notes = "the checkout at {rev}"

    @property
    def requirements(self):
        return ["-e", {src!r} + "[server]"]  # commits before the split have no such extra: pip warns


ADAPTER = BaseDevpi()
'''


def prepare(base: str, out: Path, shared_bench: Path) -> Path:
    """The bench copy with the extra adapter, the old source and its venv; returns the bench dir."""
    src = out / "base-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", base], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    bench = out / "bench"
    shutil.rmtree(bench, ignore_errors=True)
    shutil.copytree(shared_bench, bench, ignore=shutil.ignore_patterns("results", "__pycache__"))
    (bench / "adapters" / "devpi_base.py").write_text(ADAPTER.format(rev=base, src=str(src)))
    venvs = Path(os.environ.get("BENCH_ROOT") or "/tmp/bench") / "venvs"
    venv = venvs / "devpi-base"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", f"{src}[server]"], check=True)
    return bench


def pool(paths: list[Path]) -> dict:
    """Paired ratios ours/base and each one's ratio to nginx, pooled over every run given."""
    paired: dict[tuple, list[float]] = {}
    to_nginx: dict[tuple, list[float]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        for client, per_target in data["runs"].items():
            nginx = {r["rep"]: r for r in per_target["upstream"]}
            for kind in ("mirror", "dev"):
                ours = {r["rep"]: r for r in per_target[f"devpi-ours:{kind}"]}
                base = {r["rep"]: r for r in per_target[f"devpi-base:{kind}"]}
                for phase in ("cold", "warm"):
                    key = f"{phase}_s"
                    paired.setdefault((client, kind, phase), []).extend(
                        ours[rep][key] / base[rep][key] for rep in ours if rep in base)
                    for name, runs in (("ours", ours), ("base", base)):
                        to_nginx.setdefault((client, kind, phase, name), []).extend(
                            runs[rep][key] / nginx[rep][key] for rep in runs if rep in nginx)
    return {"paired": paired, "to_nginx": to_nginx}


def spread(values: list[float]) -> str:
    v = sorted(values)
    return f"×{statistics.median(v):.3f} (×{v[0]:.2f}–×{v[-1]:.2f}, n={len(v)})"


def report(pooled: dict) -> str:
    lines = ["| client | index | phase | ours / base (paired) | ours faster in | ours × nginx | base × nginx |",
             "|---|---|---|---|---|---|---|"]
    for (client, kind, phase), ratios in pooled["paired"].items():
        faster = sum(r < 1 for r in ratios)
        lines.append(f"| {client} | {kind} | {phase} | {spread(ratios)} | {faster} of {len(ratios)} | "
                     f"{spread(pooled['to_nginx'][(client, kind, phase, 'ours')])} | "
                     f"{spread(pooled['to_nginx'][(client, kind, phase, 'base')])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="the older commit to run beside this checkout")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/ab-checkouts"))
    ap.add_argument("--shared-bench", type=Path, default=SHARED_BENCH)
    ap.add_argument("--pool", nargs="*", type=Path, help="only pool these s2.json files")
    ap.add_argument("--only", default="S2", help="scenarios to run (S2 is always pooled; default: S2)")
    a = ap.parse_args(argv)
    if a.pool:
        print(report(pool(a.pool)))
        return 0
    if not a.base:
        ap.error("--base is required unless --pool is given")
    a.out.mkdir(parents=True, exist_ok=True)
    bench = prepare(a.base, a.out, a.shared_bench)
    env = dict(os.environ, DEVPI_CHECKOUT=f"{ROOT}[server]")  # pip install -e PATH[server]
    done = []
    for n in range(1, a.runs + 1):
        run_dir = a.out / f"run{n}"
        subprocess.run([sys.executable, str(bench / "run.py"), "--servers", "devpi-ours,devpi-base",
                        "--only", a.only, "--out", str(run_dir)], env=env, check=True)
        done.append(run_dir / "s2.json")
    print(report(pool(done)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
