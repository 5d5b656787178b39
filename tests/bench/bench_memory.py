"""Memory benchmark (issue 32, "bounded memory"): RSS after the shared bench, and while
mirroring an upstream whose project list has 700,000 names.

Two parts, each printing a table::

    python tests/bench/bench_memory.py biglist                 # ~1 min: the 700,000-name list
    python tests/bench/bench_memory.py biglist --names 200000  # smaller
    python tests/bench/bench_memory.py shared --out RESULTS_DIR             # ~11 min, ours only
    python tests/bench/bench_memory.py shared --out RESULTS_DIR \\
        --servers devpi-ours,devpi-server,proxpi,pypiserver                 # ~30 min, with the peers

``shared`` drives the shared benchmark harness (``../shared/bench/run.py`` from the
repository root, or $BENCH_HARNESS; $BENCH_ROOT chooses its scratch dir and venvs, see its
README) with ``--only S1,S2,S3,S4`` for this checkout (DEVPI_CHECKOUT) and the servers named:
its own scenario scripts load one long-running instance per server with S1 (warm simple
pages under wrk) and S3 (twine uploads, then wrk on the 200-version page); S4 then reports
each instance's RSS and peak RSS (VmRSS/VmHWM, summed over its processes). S2 runs on
fresh instances of its own and so does not count towards that figure. The issue's goal:
ours under 150 MiB.

``biglist`` starts a local upstream (in this process) whose ``/simple/`` lists
``--names`` projects (700,000 by default; names of PyPI's average length, PEP 691 JSON or
PEP 503 HTML by the request's Accept, like the upstream index), then this checkout's
server (``python -m devpi.server``, tests/support/server.py) mirroring it, and asks for
everything that reads the upstream list: root/pypi's simple list as JSON (the first request
fetches and stores the list) and HTML, the same without gzip (decompressed as it is sent),
the index's JSON with its project list, and the simple list of a stage ``bench/dev`` with
``bases: root/pypi`` (merged with the stage's own projects). The server's VmRSS is sampled
every 50 ms throughout; every list answer is checked complete (its name count). Then the
server restarts on the same dir (the list comes back from the database) and the root
pages are asked again. The issue's goals: peak under 300 MiB, after well under 150 MiB.
"""
from __future__ import annotations

import argparse
import gzip
import http.server
import json
import os
import random
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from support.server import ServerProcess  # noqa: E402

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
SYLLABLES = ("py", "lib", "data", "flask", "django", "core", "net", "tools", "ml", "ai", "web", "api", "cli",
             "async", "test", "utils", "sdk", "client", "io", "json", "auth", "log", "db", "sql", "cloud")


# -- part "biglist" ---------------------------------------------------------------------------
def make_names(n: int) -> list[str]:
    """n distinct, sorted project names averaging about 19 characters (the upstream index's
    700,000 names take 14 MB as newline-joined text)."""
    rnd = random.Random(32)
    names: set[str] = set()
    while len(names) < n:
        parts = [rnd.choice(SYLLABLES) for _ in range(rnd.randint(1, 3))]
        names.add("-".join(parts) + "-" + format(rnd.getrandbits(28), "x"))
    return sorted(names)


class ListUpstream:
    """/simple/ with the names, as JSON or HTML by Accept (with gzip when asked, like a CDN)."""

    def __init__(self, names: list[str]):
        html = ('<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.1">'
                "<title>Simple index</title></head><body>\n"
                + "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in names) + "</body></html>\n").encode()
        doc = {"meta": {"api-version": "1.1", "_last-serial": 1},
               "projects": [{"name": n, "_last-serial": 1} for n in names]}
        body_json = json.dumps(doc).encode()
        self.bodies = {"json": (body_json, gzip.compress(body_json, 6)), "html": (html, gzip.compress(html, 6))}
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.rstrip("/") != "/simple":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                fmt = "json" if JSON_TYPE in self.headers.get("Accept", "") else "html"
                plain, gz = bodies[fmt]
                use_gz = "gzip" in self.headers.get("Accept-Encoding", "")
                body = gz if use_gz else plain
                self.send_response(200)
                self.send_header("Content-Type", JSON_TYPE if fmt == "json" else "text/html")
                self.send_header("X-PyPI-Last-Serial", "1")
                if use_gz:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple/"

    def close(self) -> None:
        self.httpd.shutdown()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Sampler:
    """VmRSS of one process every ``interval`` seconds, in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_mib(self.pid))
            except (OSError, RuntimeError):
                pass
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def count_names(fmt: str, body: bytes) -> int:
    if fmt == "json":
        return len(json.loads(body)["projects"])
    return body.count(b"<a href=")


def run_biglist(n: int, server_args: list[str]) -> dict:
    names = make_names(n)
    up = ListUpstream(names)
    print(f"upstream list: {n} names, JSON {len(up.bodies['json'][0]) >> 20} MiB, "
          f"HTML {len(up.bodies['html'][0]) >> 20} MiB; names as text {len(chr(10).join(names)) >> 20} MiB",
          flush=True)
    del names
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    server = ServerProcess(tmp / "server", mirror_url=up.url, args=tuple(server_args)).start()
    rows: list[dict] = []
    all_samples: list[float] = []
    try:
        server.login("root", "root")
        server.create_user("bench", "bench")
        bauth = server.login("bench", "bench")
        server.create_index(bauth, "dev", bases=["root/pypi"])
        sampler = Sampler(server.proc.pid)
        start_rss = rss_mib(server.proc.pid)
        rows.append({"step": "started, indexes made", "s": 0.0, "peak": start_rss, "after": start_rss, "ok": ""})
        gz = {"Accept-Encoding": "gzip"}
        plain = {"Accept-Encoding": "identity"}
        steps = [
            ("root/pypi list JSON (fetches the list)", "/root/pypi/+simple/", {"Accept": JSON_TYPE, **gz}, "json", n),
            ("root/pypi list HTML", "/root/pypi/+simple/", {"Accept": "text/html", **gz}, "html", n),
            ("root/pypi list HTML, no gzip", "/root/pypi/+simple/", {"Accept": "text/html", **plain}, "html", n),
            ("root/pypi list JSON, no gzip", "/root/pypi/+simple/", {"Accept": JSON_TYPE, **plain}, "json", n),
            ("root/pypi index JSON with projects", "/root/pypi", {"Accept": "application/json", **gz}, "index", n),
            ("bench/dev list HTML (merged)", "/bench/dev/+simple/", {"Accept": "text/html", **gz}, "html", n),
            ("bench/dev list JSON (merged)", "/bench/dev/+simple/", {"Accept": JSON_TYPE, **gz}, "json", n),
            ("root/pypi list HTML again (cached)", "/root/pypi/+simple/", {"Accept": "text/html", **gz}, "html", n),
        ]

        def do(label: str, path: str, headers: dict, fmt: str, expect: int) -> None:
            first = len(sampler.samples)
            t0 = time.perf_counter()
            r = requests.get(server.url + path, headers=headers, timeout=600)
            took = time.perf_counter() - t0
            time.sleep(0.3)  # a few samples after the answer
            r.raise_for_status()
            got = len(r.json()["result"]["projects"]) if fmt == "index" else count_names(fmt, r.content)
            del r
            window = sampler.samples[first:] or [rss_mib(server.proc.pid)]
            rows.append({"step": label, "s": round(took, 2), "peak": max(window),
                         "after": rss_mib(server.proc.pid), "ok": "complete" if got == expect else f"{got}/{expect}"})
            print(f"  {label}: {took:.2f} s, peak {max(window):.0f} MiB", flush=True)

        for step in steps:
            do(*step)
        time.sleep(2)
        status = requests.get(server.url + "/+status", headers={"Accept": "application/json"}, timeout=60)
        memory = status.json()["result"]["memory"]
        after = rss_mib(server.proc.pid)
        sampler.stop()
        all_samples += sampler.samples
        peak = max(sampler.samples)

        server.stop()
        server.start()
        sampler = Sampler(server.proc.pid)
        restart_rss = rss_mib(server.proc.pid)
        rows.append({"step": "restarted (list from the database)", "s": 0.0, "peak": restart_rss,
                     "after": restart_rss, "ok": ""})
        for step in (steps[1], steps[0]):
            do(step[0].split(" (")[0] + " after restart", *step[1:])
        time.sleep(2)
        after_restart = rss_mib(server.proc.pid)
        sampler.stop()
        all_samples += sampler.samples
        peak_restart = max(sampler.samples)
    finally:
        server.stop()
        up.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"names": n, "rows": rows, "peak_mib": round(peak, 1), "after_mib": round(after, 1),
            "peak_after_restart_mib": round(peak_restart, 1), "after_restart_mib": round(after_restart, 1),
            "samples": len(all_samples), "memory_status": memory}


def print_biglist(res: dict) -> None:
    print(f"\nBig upstream list: {res['names']:,} names, VmRSS sampled every 50 ms "
          f"({res['samples']} samples); load average {os.getloadavg()[0]:.2f}\n")
    print("| step | time (s) | peak RSS (MiB) | RSS after (MiB) | answer |")
    print("|---|---:|---:|---:|---|")
    for r in res["rows"]:
        print(f"| {r['step']} | {r['s']:.2f} | {r['peak']:.0f} | {r['after']:.0f} | {r['ok']} |")
    print(f"\npeak {res['peak_mib']} MiB (goal < 300), after {res['after_mib']} MiB (goal well under 150); "
          f"after a restart: peak {res['peak_after_restart_mib']} MiB, after {res['after_restart_mib']} MiB")
    print("memory held (/+status):", json.dumps(res["memory_status"]))


# -- part "shared" ----------------------------------------------------------------------------
def harness_dir() -> Path:
    env = os.environ.get("BENCH_HARNESS")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "bench", Path("/work/shared/bench")]:
        if (cand / "run.py").exists():
            return cand
    raise SystemExit("benchmark harness not found: set BENCH_HARNESS to the shared bench directory")


def run_shared(servers: str, out: Path, install: bool) -> dict:
    cmd = [sys.executable, str(harness_dir() / "run.py"), "--servers", servers, "--only", "S1,S2,S3,S4",
           "--out", str(out)]
    if install:
        cmd.append("--install")
    env = {**os.environ, "DEVPI_CHECKOUT": f"{REPO}[server]"}  # pip install -e PATH[server]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=harness_dir())
    return json.loads((out / "results.json").read_text())


def print_shared(results: dict) -> None:
    rss = results["s4_rss"]
    load = results.get("loadavg", {})
    print(f"\nRSS of the long-running instances after {', '.join(results.get('s4_rss_after', []))} "
          f"(S4; load average at S1 {load.get('S1')}, at S3 {load.get('S3')})\n")
    print("| server | RSS (MiB) | peak RSS (MiB) | processes |")
    print("|---|---:|---:|---:|")
    for name, r in sorted(rss.items(), key=lambda kv: kv[0] != "devpi-ours"):
        print(f"| {name} | {r['rss_kib'] / 1024:.1f} | {r['hwm_kib'] / 1024:.1f} | {r['nproc']} |")
    ours = rss.get("devpi-ours")
    if ours:
        print(f"\ndevpi-ours: {ours['rss_kib'] / 1024:.1f} MiB (goal < 150)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    b = sub.add_parser("biglist", help="RSS while mirroring a big upstream project list")
    b.add_argument("--names", type=int, default=700_000)
    b.add_argument("--server-arg", action="append", default=[], help="extra server option (repeatable)")
    b.add_argument("--json", type=Path, help="also write the figures here")
    s = sub.add_parser("shared", help="RSS after the shared bench's S1-S3")
    s.add_argument("--servers", default="devpi-ours")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--install", action="store_true", help="let the harness (re)install the venvs")
    a = ap.parse_args(argv)
    if a.part == "biglist":
        res = run_biglist(a.names, a.server_arg)
        print_biglist(res)
        if a.json:
            a.json.write_text(json.dumps(res, indent=1) + "\n")
        return 0
    print_shared(run_shared(a.servers, a.out, a.install))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
