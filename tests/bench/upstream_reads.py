"""How long the mirror's HTTP client takes to read the benchmark's 25 pages and files from upstream.

A development measurement for the cold path of issue 3's S2 target. A cold
install waits for every upstream read in turn, so one read that stalls costs
the installer the whole stall. Over the shared harness's nginx (``sendfile``
with ``tcp_nopush``, on loopback) the client's reads stalled for 40 ms on one
file in about one cold run in four: the kernel delayed its ACKs on the
keep-alive connection and nginx waited for them. ``upstream_client`` now asks
for prompt ACKs before every read; this script reads the same set with that
on and with it off, interleaved, each round on fresh connections as a cold
server has them, and prints both.

    python tests/bench/upstream_reads.py             # 40 rounds
    python tests/bench/upstream_reads.py --rounds 10

For each of the 25 packages in the harness's ``data/reqs.txt``: the project's
page, then the wheel a CPython of this machine would pick. Needs the harness's
nginx (``../shared/bench``, or ``$BENCH_HARNESS``); everything runs on
127.0.0.1.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from mirror_bench import harness_dir  # noqa: E402
from packaging.tags import sys_tags  # noqa: E402
from packaging.utils import canonicalize_version, parse_wheel_filename  # noqa: E402

from server import upstream_client  # noqa: E402

STALL_MS = 20.0  # a page and a file over loopback take 1-5 ms; a delayed ACK costs 40
_LINK = re.compile(r'<a[^>]*href="([^"]+)"[^>]*>([^<]+)</a>')


def wheel_for(page_url: str, html: str, version: str, tags: dict) -> str:
    """The URL of the wheel of ``version`` an installer with ``tags`` (tag -> preference) would take."""
    best: tuple[int, str] | None = None
    for href, text in _LINK.findall(html):
        filename = unescape(text).strip()
        if not filename.endswith(".whl"):
            continue
        _, ver, _, file_tags = parse_wheel_filename(filename)
        ranks = [tags[t] for t in file_tags if t in tags]
        if canonicalize_version(ver) == canonicalize_version(version) and ranks:
            if best is None or min(ranks) < best[0]:
                best = (min(ranks), urljoin(page_url, unescape(href)))
    if best is None:
        raise SystemExit(f"no wheel of {version} for this machine on {page_url}")
    return best[1]


def one_round(pairs: list[tuple[str, str]]) -> list[float]:
    """Milliseconds per (page, file) pair, read by a fresh client as a cold server would."""
    client = upstream_client.UpstreamClient("upstream-reads-bench")
    times = []
    for page, wheel in pairs:
        t0 = time.perf_counter()
        client.get(page, headers={"Accept": "text/html"})
        resp = client.get(wheel, stream=True)
        for _ in resp.iter_content(256 * 1024):  # the mirror's download piece size
            pass
        times.append(1000 * (time.perf_counter() - t0))
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(harness_dir()))
    from harness import DATA
    from harness.upstream import Upstream

    prompt = upstream_client._QUICKACK
    if prompt is None:
        raise SystemExit("this platform has no TCP_QUICKACK: nothing to compare")
    reqs = [line.split("==") for line in (DATA / "reqs.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    upstream = Upstream().start()
    try:
        base = upstream.direct_simple_url.rstrip("/")
        pairs, finder = [], upstream_client.UpstreamClient("upstream-reads-bench")
        tags = {tag: rank for rank, tag in enumerate(sys_tags())}
        for name, version in reqs:
            page = f"{base}/{name}/"
            html = finder.get(page).content.decode()
            pairs.append((page, wheel_for(page, html, version, tags)))
        results: dict[str, list[list[float]]] = {"prompt ACKs": [], "kernel default": []}
        for i in range(a.rounds):
            for label in (list(results) if i % 2 else list(results)[::-1]):
                upstream_client._QUICKACK = prompt if label == "prompt ACKs" else None
                results[label].append(one_round(pairs))
    finally:
        upstream_client._QUICKACK = prompt
        upstream.stop()
    print(f"{len(pairs)} pages and files from the harness's nginx, {a.rounds} rounds each, interleaved:")
    for label, rounds in results.items():
        totals = [sum(r) for r in rounds]
        stalled = sum(1 for r in rounds if max(r) > STALL_MS)
        print(f"  {label:15s} round median {statistics.median(totals):6.1f} ms, mean {statistics.mean(totals):6.1f} ms, "
              f"max {max(totals):6.1f} ms; rounds with a read over {STALL_MS:.0f} ms: {stalled} of {len(rounds)}")


if __name__ == "__main__":
    main()
