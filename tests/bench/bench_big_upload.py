"""One large upload, timed end to end (issue 24, finding 13): how close an upload comes to
writing its bytes once.

Standalone: ``python tests/bench/bench_big_upload.py [--size-mb 100] [--reps 3]``. It starts
a real server process (the interpreter running this script decides which code) and posts a
wheel of ``--size-mb`` incompressible bytes the way twine does (multipart, with
``sha256_digest`` and ``md5_digest``), a new file each repetition, and prints each upload's
wall time next to ``dd conv=fsync`` of the same bytes on the same disk as the floor.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: support.*

from support.dists import wheel_bytes  # noqa: E402
from support.server import ServerProcess  # noqa: E402


def big_wheel(path: Path, size: int) -> None:
    _fn, small = wheel_bytes("big-pkg", "1.0")
    src = zipfile.ZipFile(io.BytesIO(small))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for info in src.infolist():
            zf.writestr(info.filename, src.read(info))
        zf.writestr("big_pkg/data.bin", os.urandom(size))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wheel = work / "big_pkg-1.0-py3-none-any.whl"
        big_wheel(wheel, args.size_mb * 1024 * 1024)
        t0 = time.perf_counter()
        subprocess.run(["dd", f"if={wheel}", f"of={work / 'dd.bin'}", "bs=1M", "conv=fsync", "status=none"],
                       check=True)
        dd = time.perf_counter() - t0
        s = ServerProcess(work / "server").start()
        try:
            s.create_user("bench", "pw")
            s.create_index(("bench", s.login("bench", "pw")[1]), "dev")
            times = []
            for i in range(args.reps):
                if i:  # other bytes each time: an identical file would be "unchanged"
                    with zipfile.ZipFile(wheel, "a") as zf:
                        zf.writestr(f"big_pkg/rep{i}.txt", str(i))
                raw = wheel.read_bytes()
                form = {":action": "file_upload", "name": "big-pkg", "version": "1.0",
                        "sha256_digest": hashlib.sha256(raw).hexdigest(), "md5_digest": hashlib.md5(raw).hexdigest()}
                del raw
                with open(wheel, "rb") as f:
                    t0 = time.perf_counter()
                    r = requests.post(f"{s.url}/bench/dev/", data=form, files={"content": (wheel.name, f)},
                                      auth=("bench", "pw"), timeout=300)
                    times.append(time.perf_counter() - t0)
                r.raise_for_status()
        finally:
            s.stop()
    print(f"{sys.executable}: {args.size_mb} MiB upload "
          f"{' '.join(f'{t:.2f}' for t in times)} s; dd conv=fsync {dd:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
