"""Run every benchmark in tests/bench/ in turn (what `tox -e bench` calls).

    python tests/bench/run_all.py            # full runs; figures go into doc/performance.md
    python tests/bench/run_all.py --quick    # smoke runs of each

Each benchmark is its own script and can be run alone; see their docstrings.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = [
    ("uploads, 2,000-version page, start-up", ["bench_uploads.py", "--write-doc"]),
    ("web pages", ["bench_web.py"]),
    ("mirror pages, pip and uv, side by side with devpi-server", ["mirror_bench.py"]),
]


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    failed = []
    for title, (script, *args) in BENCHES:
        if quick and script != "bench_web.py":
            args = [*args, "--quick"]
        print(f"\n=== {title}: {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args]).returncode != 0:
            failed.append(script)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
