"""Cached simple pages of a read-restricted index against a public one (issue 26).

Standalone: ``python tests/bench/bench_acl_pages.py [--rounds R] [--seconds S] [--json out.json]``
with this checkout's venv (``wrk`` must be installed).

One server, one user (alice), two indexes holding the same wheel: ``alice/pub`` (no
``acl_read``: everyone reads) and ``alice/secret`` (``acl_read=alice``). Each round runs wrk
on the cached project page in three ways, the order rotating per round so that neither
side always runs on a warmer or quieter machine:

* ``pub-anon``: the public page, no credentials (what S1 of the shared bench measures);
* ``pub-basic``: the public page with alice's Basic credentials (pip with a password in
  the index URL sends them on every request);
* ``secret-basic``: the restricted page with the same credentials.

The restricted page costs one credential check (a hit in the verified-password cache: an
HMAC, no key derivation) and one ACL check more than the anonymous public one. It prints
req/s medians with min-max per case, the per-round ratio ``secret-basic / pub-anon`` and
its median, and the load average before and after; the goal is a ratio of at least 0.5
("within 2x"). Before measuring, it checks that the restricted page refuses an anonymous
request (401) and a logged-in non-reader (403/404), so the figure is for a page that is
really protected.
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
sys.path.insert(0, str(HERE.parent))  # tests/: support.*

from support.dists import write_wheel  # noqa: E402
from support.server import ServerProcess  # noqa: E402

CASES = ("pub-anon", "pub-basic", "secret-basic")
PAGE = "/alice/{index}/+simple/acl-bench/"


def prepare(server: ServerProcess, workdir: Path) -> tuple[str, str]:
    alice = server.create_user("alice", "alice-pw")
    server.create_user("mallory", "mallory-pw")
    server.create_index(alice, "pub", bases=[])
    server.create_index(alice, "secret", bases=[], acl_read=["alice"])
    wheel = write_wheel(workdir, "acl-bench", "1.0")
    for index in ("pub", "secret"):
        r = server.upload(f"alice/{index}", wheel, auth=("alice", "alice-pw"))
        assert r.status_code == 200, r.text
    return "alice", "alice-pw"


def check_protected(server: ServerProcess) -> None:
    url = server.url + PAGE.format(index="secret")
    anon = requests.get(url, timeout=30)
    other = requests.get(url, auth=("mallory", "mallory-pw"), timeout=30)
    reader = requests.get(url, auth=("alice", "alice-pw"), timeout=30)
    if anon.status_code != 401 or other.status_code not in (403, 404) or reader.status_code != 200:
        raise SystemExit(f"alice/secret is not protected as expected: anonymous {anon.status_code}, "
                         f"non-reader {other.status_code}, reader {reader.status_code}")


def wrk(url: str, seconds: int, connections: int, auth: tuple[str, str] | None) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    if auth:
        import base64

        cmd[1:1] = ["-H", "Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk got errors on {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-acl-") as tmp:
        workdir = Path(tmp)
        server = ServerProcess(workdir / "server").start()
        try:
            auth = prepare(server, workdir)
            check_protected(server)
            urls = {"pub-anon": (PAGE.format(index="pub"), None),
                    "pub-basic": (PAGE.format(index="pub"), auth),
                    "secret-basic": (PAGE.format(index="secret"), auth)}
            for path, a in urls.values():  # fill the page cache
                requests.get(server.url + path, auth=a, timeout=30).raise_for_status()
            results: dict[str, list[float]] = {case: [] for case in CASES}
            for n in range(args.rounds):
                order = CASES[n % len(CASES):] + CASES[:n % len(CASES)]
                for case in order:
                    path, a = urls[case]
                    results[case].append(wrk(server.url + path, args.seconds, args.connections, a))
        finally:
            server.stop()
    ratios = [s / p for s, p in zip(results["secret-basic"], results["pub-anon"], strict=True)]
    summary = {
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": args.rounds, "seconds": args.seconds, "connections": args.connections,
        "rps": {c: {"median": round(statistics.median(v)), "min": round(min(v)), "max": round(max(v))}
                for c, v in results.items()},
        "ratio_secret_to_public": {"median": round(statistics.median(ratios), 3),
                                   "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**summary, "raw": results}, indent=2))


if __name__ == "__main__":
    main()
