"""Disk reclaiming at scale (issue 27): a mirror holding ``--total-mb`` of cached files is
brought under a ``--budget-mb`` cache budget, then the blob store is collected.

Standalone: ``python tests/bench/bench_disk_reclaim.py [--total-mb 2048] [--budget-mb 500]
[--files 100]``. It writes a local PEP 503 tree of incompressible files, starts a real
server process mirroring it (``file://``), downloads every file through the server (so
the mirror caches them), then runs, beside the running server:

1. ``devpi gc --mirror-cache-size BUDGET`` (eviction, least recently used first), and
2. ``devpi gc --grace 0`` (a full collection: the scan of the blob store and one query),

printing the blob store's size on disk before and after each, and each one's wall time.
The cached blobs are back-dated an hour first: eviction skips a file whose blob was
written in the last 30 seconds (mirror/cache_budget.FRESH), and the bench measures the
eviction itself, not a wait.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: support.*

from support.server import ServerProcess  # noqa: E402


def tree(root: Path, files: int, size: int) -> list[tuple[str, str, str]]:
    """(project, filename, sha256) of a local tree of ``files`` files of ``size`` bytes."""
    out = []
    (root / "files").mkdir(parents=True)
    index = []
    for i in range(files):
        project = f"reclaim-{i:04d}"
        filename = f"reclaim_{i:04d}-1.0.tar.gz"
        h = hashlib.sha256()
        with open(root / "files" / filename, "wb") as fh:
            left = size
            while left:
                chunk = os.urandom(min(left, 4 << 20))
                fh.write(chunk)
                h.update(chunk)
                left -= len(chunk)
        sha = h.hexdigest()
        (root / "simple" / project).mkdir(parents=True)
        (root / "simple" / project / "index.html").write_text(
            f'<a href="../../files/{filename}#sha256={sha}">{filename}</a>')
        index.append(f'<a href="{project}/">{project}</a>')
        out.append((project, filename, sha))
    (root / "simple" / "index.html").write_text("\n".join(index))
    return out


def du(path: Path) -> int:
    """Bytes the blob files take (their sizes; the directories are negligible)."""
    return sum(p.stat().st_size for d in path.iterdir() if len(d.name) == 2 and d.is_dir() for p in d.iterdir())


def admin(*args: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "devpi.client", *args, "--json"], capture_output=True, text=True,
                          check=True)
    return time.perf_counter() - t0, json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total-mb", type=int, default=2048)
    ap.add_argument("--budget-mb", type=int, default=500)
    ap.add_argument("--files", type=int, default=100)
    args = ap.parse_args(argv)
    size = args.total_mb * 1024 * 1024 // args.files
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        entries = tree(work / "tree", args.files, size)
        print(f"tree: {args.files} files of {size // 1024} KiB in {time.perf_counter() - t0:.1f} s")
        s = ServerProcess(work / "server").start()
        try:
            auth = s.login("root", "root")
            s.create_index(auth, "tree", type="mirror", mirror_url=f"file://{work / 'tree' / 'simple'}/")
            t0 = time.perf_counter()
            for project, _filename, _sha in entries:
                page = requests.get(f"{s.url}/root/tree/+simple/{project}/",
                                    headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60).json()
                url = requests.compat.urljoin(f"{s.url}/root/tree/+simple/{project}/", page["files"][0]["url"])
                with requests.get(url, stream=True, timeout=300) as r:
                    r.raise_for_status()
                    for _ in r.iter_content(1 << 20):
                        pass
            fill = time.perf_counter() - t0
            blobs = s.serverdir / "blobs"
            deadline = time.monotonic() + 60
            while du(blobs) < args.files * size and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)  # the last rows land (the mirror's writer commits in the background)
            stamp = time.time() - 3600
            for d in blobs.iterdir():
                if len(d.name) == 2 and d.is_dir():
                    for p in d.iterdir():
                        os.utime(p, (stamp, stamp))
            before = du(blobs)
            print(f"cached {args.files} files through the mirror in {fill:.1f} s: blob store {before / 2**20:.0f} MiB")
            took, rep = admin("gc", "--serverdir", str(s.serverdir), "--mirror-cache-size", f"{args.budget_mb}M",
                              "--grace", "3600")
            after_evict = du(blobs)
            ev = rep["eviction"]
            print(f"eviction to {args.budget_mb} MiB: {ev['evicted']} files evicted, "
                  f"{ev['evicted_bytes'] / 2**20:.0f} MiB freed in {took:.2f} s (whole command); "
                  f"blob store {after_evict / 2**20:.0f} MiB")
            took, rep = admin("gc", "--serverdir", str(s.serverdir), "--grace", "0")
            c = rep["collection"]
            print(f"collection: {c['blobs']} blobs scanned, {c['deleted']} deleted in {took:.2f} s (whole command); "
                  f"blob store {du(blobs) / 2**20:.0f} MiB")
            # a file evicted is fetched again on demand, with its hash checked
            project, filename, sha = entries[0]
            page = requests.get(f"{s.url}/root/tree/+simple/{project}/",
                                headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60).json()
            url = requests.compat.urljoin(f"{s.url}/root/tree/+simple/{project}/", page["files"][0]["url"])
            t0 = time.perf_counter()
            got = hashlib.sha256(requests.get(url, timeout=300).content).hexdigest()
            print(f"refetch of an evicted file: {'hash matches' if got == sha else 'HASH MISMATCH'} "
                  f"in {time.perf_counter() - t0:.2f} s")
        finally:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
