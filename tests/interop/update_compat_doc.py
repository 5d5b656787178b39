"""Regenerate doc/compatibility.md by running the whole interop suite.

    python tests/interop/update_compat_doc.py [extra pytest args, e.g. -n 2]

The matrix is written by the suite's own plugin (tests/interop/compat.py) at
the end of any run that covered every operation; this script only makes
sure such a run happens. Exit status is pytest's (a failing row is written as
FAILS, and the run is red).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", "tests/interop", "-q", "-p", "no:cacheprovider", *argv]
    proc = subprocess.run(cmd, cwd=ROOT)
    doc = ROOT / "doc" / "compatibility.md"
    print(f"{doc.relative_to(ROOT)}: {'present' if doc.exists() else 'MISSING'} (pytest exit {proc.returncode})")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
