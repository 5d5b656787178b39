"""What GET /+metrics and GET /+health cost, and what counting costs the cached-page lane.

Standalone: ``python tests/bench/bench_ops_endpoints.py [--rounds R] [--seconds S] [--json out.json]``
with this checkout's venv (``wrk`` must be installed).

Two servers from this checkout run side by side, each with one stage holding one wheel:

* ``metrics``: the server as shipped;
* ``baseline``: the same server with the counting switched off before it starts (the
  request log's ``observe`` hooks set to None, the page-cache hit/miss counters replaced by
  no-ops): the request path of the commit before metrics.

Each round runs wrk on the cached simple page of both (order alternating per round, so
neither side always runs on a warmer or quieter machine), then on ``/+metrics`` and
``/+health`` of the ``metrics`` server with one connection (a scraper asks one at a time).
It prints req/s and wrk's latency median per case as median with min-max over the rounds,
the per-round ratio metrics/baseline of the cached page, the scrape's size, and the load
average before and after.
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

PAGE = "/root/bench/+simple/ops-bench/"
BASELINE_BOOT = """
import sys
from devpi.server.http import request_metrics
from devpi.server.runtime import metrics

class _Nothing:
    def inc(self, amount=1):
        pass

request_metrics.observe = request_metrics.observe_cached = None  # RequestLog skips its hook
metrics.PAGE_CACHE.labels = lambda *labels: _Nothing()
from devpi.server.main import main
sys.exit(main(sys.argv[1:]))
"""


class BaselineServer(ServerProcess):
    def command(self) -> list[str]:
        cmd = super().command()
        assert cmd[1:3] == ["-m", "devpi.server"]
        return [cmd[0], "-c", BASELINE_BOOT, *cmd[3:]]


def prepare(server: ServerProcess, workdir: Path) -> None:
    auth = server.login("root", "root")
    server.create_index(auth, "bench", bases=[])
    r = server.upload("root/bench", write_wheel(workdir, "ops-bench", "1.0"), auth)
    assert r.status_code == 200, r.text
    for _ in range(3):  # rendered once, then cached
        requests.get(server.url + PAGE, timeout=30).raise_for_status()


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """(requests per second, median latency in milliseconds)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk got errors on {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    return rps, float(m.group(1)) * _UNITS[m.group(2)] * 1000


def spread(values: list[float], digits: int = 0) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=8, help="for the cached page")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    load_before = os.getloadavg()
    cases = ("page-baseline", "page-metrics", "metrics", "health")
    rps: dict[str, list[float]] = {c: [] for c in cases}
    latency: dict[str, list[float]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp:
        workdir = Path(tmp)
        servers = {"page-baseline": BaselineServer(workdir / "baseline"),
                   "page-metrics": ServerProcess(workdir / "metrics")}
        try:
            for s in servers.values():
                s.start()
                prepare(s, workdir)
            shipped = servers["page-metrics"]
            scrape = requests.get(shipped.url + "/+metrics", timeout=30)
            baseline_scrape = requests.get(servers["page-baseline"].url + "/+metrics", timeout=30).text
            if 'route="/<user>/<index>/+simple/<project>/"' in baseline_scrape:
                raise SystemExit("the baseline server counts requests: the switch-off did not work")
            for n in range(args.rounds):
                pages = ["page-baseline", "page-metrics"] if n % 2 == 0 else ["page-metrics", "page-baseline"]
                for case in pages:
                    got = wrk(servers[case].url + PAGE, args.seconds, args.connections)
                    rps[case].append(got[0])
                    latency[case].append(got[1])
                for case, path in (("metrics", "/+metrics"), ("health", "/+health")):
                    got = wrk(shipped.url + path, args.seconds, 1)
                    rps[case].append(got[0])
                    latency[case].append(got[1])
            counted = requests.get(shipped.url + "/+metrics", timeout=30).text
            m = re.search(r'devpi_http_requests_total\{method="GET",route="/<user>/<index>/\+simple/<project>/",'
                          r'status="200"\} ([\d.e+]+)', counted)
            page_requests_counted = float(m.group(1)) if m else 0.0
        finally:
            for s in servers.values():
                s.stop()
    ratios = [m / b for m, b in zip(rps["page-metrics"], rps["page-baseline"], strict=True)]
    summary = {
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": args.rounds, "seconds": args.seconds, "page_connections": args.connections,
        "rps": {c: spread(v) for c, v in rps.items()},
        "latency_median_ms": {c: spread(v, 3) for c, v in latency.items()},
        "ratio_page_metrics_to_baseline": spread(ratios, 3),
        "scrape_bytes": len(scrape.content),
        "page_requests_counted": page_requests_counted,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**summary, "raw": {"rps": rps, "latency": latency}}, indent=2))


if __name__ == "__main__":
    main()
