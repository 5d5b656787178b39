"""Soak test: a bounded mix of 200 clients and 1,000 idle sockets (issue 24, "Done when" 3).

Standalone, on 127.0.0.1 only (it starts everything it talks to)::

    python tests/bench/soak.py                        # 10 minutes, the issue's criteria
    python tests/bench/soak.py --quick                # 60 s smoke run
    python tests/bench/soak.py --write-doc --json soak.json \\
        --server-arg=--threads=32 --server-arg=--upstream-threads=16

(write ``--server-arg=VALUE`` with the ``=``: a value that starts with ``--`` needs it).
Against the landed code add ``--idle 0`` to see the rest once the idle sockets have shown
what they do, or ``--server-nofile 1024`` for the server's usual open-file limit.

It starts a local upstream (tests/support/upstream.py, with real wheels) and a *hanging*
upstream (accepts, reads the request, never answers; it closes each connection after
``--hang-close`` s), both in a helper process, then the server under test
(``ServerProcess`` with the good upstream as ``--mirror-url`` plus every ``--server-arg``).
As root it creates ``root/hang``, a mirror of the hanging upstream, and a user stage
``soak/dev`` with ``bases: root/pypi``. Then, for ``--duration`` seconds:

* ``--clients`` (200) concurrent clients, each with its own keep-alive connection (asyncio +
  aiohttp, one process), split by ``--mix``: uploaders (unique tiny wheels, POSTed like
  twine; every 200 is an acknowledged upload whose filename and sha256 are kept), page
  readers (mirror, stage and merged pages, JSON and HTML), file downloaders (read a JSON
  page like pip, download a file, check its sha256), long-pollers
  (``GET /+changelog/<serial+1>?timeout=...``) and readers of the hanging mirror's pages.
  Uploads pause in every other 30 s, so that long-polls then wait their whole timeout; a
  429 or 503 with ``Retry-After`` makes a client wait that long (at most 30 s);
* ``--idle`` (1,000) idle sockets held open, half silent and half with a partial request
  (``GET /+api HTTP/1.1``, ``Host``, never finished); one the server closes is counted and
  opened again;
* a probe, in its own process so that the load generator's GIL cannot delay it, that opens
  a fresh connection every 0.5 s and times ``GET /+api`` to its last byte;
* the server's VmRSS, VmHWM, open fds and threads, sampled every second (summed over its
  worker processes, if it has any).

Then it stops the load, checks that every acknowledged upload is listed on its page with
its sha256 and that its bytes hash to it, stops the server with SIGTERM, starts it again
on the same server dir, and checks every upload again.

How answers are judged: a 5xx is "from our side" unless it is a 502, 503 or 504 answered
to a reader of the hanging mirror, which is the server telling the truth about an upstream
that does not answer. A request that gets no answer (connection error, or no answer
within the client's timeout: 60 s, long-polls their timeout + 30 s) is a failure for every
kind, the hanging mirror's too: every wait must be bounded. The criteria, each of which
makes the exit code non-zero: no 5xx from our side, every request answered, every
download matching its sha256 and every acknowledged upload listed while the load runs, the
server alive throughout and restarting cleanly after SIGTERM, no acknowledged upload lost
(before and after the restart), every probe answered 200 in under 1 s, and RSS never above
``--rss-bound`` (400 MiB: the landed server stays near 120 MiB under this mix, so 400 leaves
room for connection buffers without letting a leak or an unbounded cache pass). A 4xx is
never a failure (a 429 is how an overloaded server should say so).
``--write-doc`` puts the figures into doc/performance.md between the ``soak`` markers.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import resource
import shlex
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # tests/: support.*

from support.dists import wheel_bytes  # noqa: E402
from support.server import ServerProcess  # noqa: E402

DOC = REPO / "doc" / "performance.md"
START, END = "<!-- soak:start -->", "<!-- soak:end -->"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
              "text/html; q=0.01")
KINDS = ("uploads", "pages", "files", "longpolls", "hanging")
DEFAULT_MIX = "uploads=10,pages=80,files=40,longpolls=40,hanging=30"
# Mean think time (s) between a client's requests: a soak is about staying up under a
# steady mix, not about the most requests a 2-core machine can push.
THINK = {"uploads": 1.0, "pages": 0.5, "files": 0.5, "longpolls": 0.1, "hanging": 1.0}
GATEWAY = {502, 503, 504}  # honest answers about the hanging upstream, for its readers only
CLIENT_TIMEOUT = 60.0
LONGPOLL_TIMEOUT = 25
PROBE_EVERY = 0.5
QUIET_PHASE = 30.0
PROBE_LIMIT = 1.0
UPSTREAM_PROJECTS = 40
USER, PASSWORD, STAGE = "soak", "soak-password", "dev"


# ---------------------------------------------------------------------------
# helper processes (spawned, so that their work does not share the generator's GIL)

async def _hanging_server(port_out: list, close_after: float, stats: Counter, limit: int = 4096) -> None:
    """Accept, read the request head, never answer; close after *close_after* s (or when the
    client goes). At most *limit* connections are held: beyond, new ones are closed at once."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats["accepted"] += 1
        if stats["open"] >= limit:
            stats["refused_over_limit"] += 1
            writer.close()
            return
        stats["open"] += 1
        stats["max_open"] = max(stats["max_open"], stats["open"])
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), close_after)
                stats["requests"] += 1
                await asyncio.wait_for(reader.read(1), close_after)  # '' when the client goes
        finally:
            stats["open"] -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    port_out.append(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def upstreams_main(conn, close_after: float, projects: int) -> None:
    """The good upstream (real wheels) and the hanging one; tells the parent their URLs and
    files, answers "stats", and exits on "stop" or when the parent goes."""
    import threading

    from support.upstream import Upstream

    up = Upstream().start()
    files = {}
    for i in range(projects):
        name = f"mirrored-{i}"
        files[name] = [(f.filename, f.sha256) for f in
                       (up.add_wheel(name, v) for v in ("1.0", "1.1", "2.0"))]
    stats: Counter = Counter()
    port: list = []
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_until_complete, args=(_hanging_server(port, close_after, stats),),
                     daemon=True).start()
    while not port:
        time.sleep(0.01)
    conn.send({"url": up.url, "hang_url": f"http://127.0.0.1:{port[0]}/simple/", "files": files})
    try:
        while True:
            msg = conn.recv()
            if msg == "stats":
                conn.send({"hanging": dict(stats), "upstream_requests": len(up._log)})
            elif msg == "stop":
                break
    except EOFError:
        pass
    up.stop()


def probe_main(conn, port: int, every: float, timeout: float, most: int = 64) -> None:
    """Every *every* s a fresh connection times ``GET /+api`` to its last byte, on its own
    thread, so that one stuck probe does not hide the next; at most *most* in flight (the
    rest are recorded as "skipped"). Sends the list of (seconds since start, seconds taken or
    None, status or error name) on "stop"."""
    import threading

    results: list = []
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(most)
    t0 = time.monotonic()

    def one(start: float) -> None:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            c.request("GET", "/+api", headers={"Accept": "application/json", "Connection": "close"})
            resp = c.getresponse()
            resp.read()
            c.close()
            row = (start - t0, time.monotonic() - start, resp.status)
        except Exception as e:  # an unanswered probe is a figure, not a crash
            row = (start - t0, None, type(e).__name__)
        finally:
            slots.release()
        with lock:
            results.append(row)

    threads = []
    conn.send("ready")
    next_at = t0 = time.monotonic()
    while not conn.poll(max(0.0, next_at - time.monotonic())):
        next_at += every
        start = time.monotonic()
        if slots.acquire(blocking=False):
            threads.append(threading.Thread(target=one, args=(start,), daemon=True))
            threads[-1].start()
        else:
            with lock:
                results.append((start - t0, None, "skipped: too many probes in flight"))
    for th in threads:
        th.join(timeout + 1)
    with lock:
        conn.send(sorted(results))


# ---------------------------------------------------------------------------
# the load

@dataclass
class Load:
    url: str
    token: str
    mirror_files: dict[str, list[tuple[str, str]]]
    stop: asyncio.Event
    think_scale: float
    statuses: Counter = field(default_factory=Counter)  # (kind, what, status)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)  # the first few, for the report
    checks: Counter = field(default_factory=Counter)  # (check, "ok" or what went wrong)
    retried: Counter = field(default_factory=Counter)
    acked: list[dict] = field(default_factory=list)
    serial: int = 0
    cut: Counter = field(default_factory=Counter)  # requests in flight when the run ended, by kind
    idle: Counter = field(default_factory=Counter)
    idle_open_s: list[float] = field(default_factory=list)  # how long each one the server closed was open
    started: float = field(default_factory=time.monotonic)
    loop_lag: list[float] = field(default_factory=list)  # the generator's own delay: is it keeping up?

    def quiet(self) -> bool:
        """Uploads pause in every other QUIET_PHASE s, so that long-polls then wait their whole
        timeout (with uploads going on, the next serial comes within a second)."""
        return int((time.monotonic() - self.started) / QUIET_PHASE) % 2 == 1

    def note(self, kind: str, what: str, status, took: float, detail: str = "") -> None:
        self.statuses[(kind, what, status)] += 1
        self.latencies[kind].append(took)
        if is_failure(kind, status) and len(self.failures) < 40:
            self.failures.append(f"{kind} {what}: {status} {detail[:160]}")

    async def think(self, kind: str) -> None:
        delay = random.uniform(0, 2 * THINK[kind] * self.think_scale)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), delay)

    async def get(self, session: aiohttp.ClientSession, kind: str, what: str, path: str, *,
                  accept: str = JSON_ACCEPT, timeout: float = CLIENT_TIMEOUT, expect=(200,)):
        """GET with one retry when a kept-alive connection was closed under us (as pip's
        urllib3 does); returns (status or error, body or None)."""
        for attempt in (0, 1):
            start = time.monotonic()
            try:
                url = path if path.startswith("http") else self.url + path
                async with session.get(url, headers={"Accept": accept},
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    body = await r.read()
                    self.saw_serial(r.headers)
                    status = r.status
                    self.note(kind, what, status, time.monotonic() - start,
                              "" if status in expect else body[:160].decode(errors="replace"))
                    if status in (429, 503):  # an overloaded server asks us to come back later
                        with contextlib.suppress(TypeError, ValueError):
                            await asyncio.sleep(min(float(r.headers.get("Retry-After")), 30.0))
                    return status, body
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                if attempt == 0 and not self.stop.is_set():
                    self.retried[kind] += 1
                    continue
                return self._error(kind, what, e, start), None
            except (TimeoutError, aiohttp.ClientError) as e:
                return self._error(kind, what, e, start), None
            except asyncio.CancelledError:
                self.cut[kind] += 1
                raise
        raise AssertionError("unreachable")

    def _error(self, kind: str, what: str, e: BaseException, start: float) -> str:
        name = "timeout" if isinstance(e, TimeoutError) else f"error:{type(e).__name__}"
        if not self.stop.is_set():  # a request cut short by the end of the run is not a failure
            self.note(kind, what, name, time.monotonic() - start, str(e))
        else:
            self.cut[kind] += 1
        return name

    @property
    def basic_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{USER}:{self.token}".encode()).decode()

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks[(name, "ok" if ok else "FAILED")] += 1
        if not ok and len(self.failures) < 40:
            self.failures.append(f"check failed: {name}: {detail}")

    def saw_serial(self, headers) -> None:
        with contextlib.suppress(TypeError, ValueError):
            self.serial = max(self.serial, int(headers.get("X-Devpi-Serial")))


def is_failure(kind: str, status) -> bool:
    if isinstance(status, str):
        return True  # no answer
    return status >= 500 and not (kind == "hanging" and status in GATEWAY)


def is_our_5xx(kind: str, status) -> bool:
    return isinstance(status, int) and status >= 500 and not (kind == "hanging" and status in GATEWAY)


async def uploader(load: Load, session: aiohttp.ClientSession, i: int) -> None:
    n = 0
    while not load.stop.is_set():
        if load.quiet():
            await load.think("uploads")
            continue
        project, version = f"soak-up{i}-{n // 20}", f"1.{n}"
        n += 1
        filename, data = wheel_bytes(project, version)
        form = aiohttp.FormData()
        for k, v in ((":action", "file_upload"), ("protocol_version", "1"), ("name", project),
                     ("version", version)):
            form.add_field(k, v)
        form.add_field("content", data, filename=filename, content_type="application/octet-stream")
        start = time.monotonic()
        try:
            async with session.post(f"{load.url}/{USER}/{STAGE}/", data=form,
                                    headers={"Authorization": load.basic_auth},
                                    timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)) as r:
                body = await r.read()
                load.saw_serial(r.headers)
                load.note("uploads", "POST", r.status, time.monotonic() - start,
                          body[:160].decode(errors="replace"))
                if r.status == 200:
                    load.acked.append({"project": project, "filename": filename,
                                       "sha256": hashlib.sha256(data).hexdigest()})
        except (TimeoutError, aiohttp.ClientError) as e:
            load._error("uploads", "POST", e, start)
        except asyncio.CancelledError:
            load.cut["uploads"] += 1
            raise
        await load.think("uploads")


def _stage_projects(load: Load) -> list[str]:
    return sorted({a["project"] for a in load.acked[-400:]})


async def page_reader(load: Load, session: aiohttp.ClientSession) -> None:
    mirrored = list(load.mirror_files)
    while not load.stop.is_set():
        accept = random.choice((JSON_ACCEPT, PIP_ACCEPT, "text/html"))
        fmt = "json" if accept == JSON_ACCEPT else "html"
        roll = random.random()
        uploaded = _stage_projects(load)
        if roll < 0.35:
            what, path = f"mirror page {fmt}", f"/root/pypi/+simple/{random.choice(mirrored)}/"
        elif roll < 0.6 and uploaded:
            what, path = f"stage page {fmt}", f"/{USER}/{STAGE}/+simple/{random.choice(uploaded)}/"
        elif roll < 0.9:
            what, path = f"merged page {fmt}", f"/{USER}/{STAGE}/+simple/{random.choice(mirrored)}/"
        else:
            what, path = f"stage project list {fmt}", f"/{USER}/{STAGE}/+simple/"
        await load.get(session, "pages", what, path, accept=accept)
        await load.think("pages")


async def downloader(load: Load, session: aiohttp.ClientSession) -> None:
    """Like pip: read the project's JSON page, take a file's URL and sha256 from it, download
    and check; an uploaded file is checked against the hash acknowledged at upload too."""
    mirrored = list(load.mirror_files)
    while not load.stop.is_set():
        acked = load.acked[-400:]
        if acked and random.random() < 0.5:
            upload = random.choice(acked)
            index, project, what = f"{USER}/{STAGE}", upload["project"], "uploaded file"
        else:
            upload, index, project, what = None, "root/pypi", random.choice(mirrored), "mirror file"
        status, body = await load.get(session, "files", f"{what}'s page", f"/{index}/+simple/{project}/")
        if status == 200:
            try:
                files = [f for f in json.loads(body)["files"] if f["hashes"]["sha256"]]
            except (ValueError, KeyError, TypeError) as e:
                load.check("project page is PEP 691 JSON with sha256 hashes", False, f"{project}: {e!r}")
                files = []
            if upload is not None:
                files = [f for f in files if f["filename"] == upload["filename"]]
                load.check("acknowledged upload listed on its page", bool(files), upload["filename"])
            if files:
                f = random.choice(files)
                page = f"{load.url}/{index}/+simple/{project}/"
                url = urllib.parse.urljoin(page, f["url"]).split("#")[0]
                status, data = await load.get(session, "files", what, url, accept="*/*")
                if status == 200:
                    want = upload["sha256"] if upload else f["hashes"]["sha256"]
                    load.check(f"{what}'s bytes match the sha256",
                               hashlib.sha256(data).hexdigest() == want == f["hashes"]["sha256"], f["filename"])
        await load.think("files")


async def long_poller(load: Load, session: aiohttp.ClientSession) -> None:
    while not load.stop.is_set():
        wait = random.randint(LONGPOLL_TIMEOUT // 2, LONGPOLL_TIMEOUT)
        await load.get(session, "longpolls", "changelog", f"/+changelog/{load.serial + 1}?timeout={wait}",
                       accept="application/json", timeout=wait + 30, expect=(200, 202))
        await load.think("longpolls")


async def hanging_reader(load: Load, session: aiohttp.ClientSession) -> None:
    while not load.stop.is_set():
        accept = random.choice((JSON_ACCEPT, PIP_ACCEPT))
        await load.get(session, "hanging", "hanging mirror page",
                       f"/root/hang/+simple/hung-{random.randrange(100_000)}/", accept=accept)
        await load.think("hanging")


async def idle_socket(load: Load, port: int, partial: bool) -> None:
    """Hold a connection doing nothing (or a request never finished); reopen it when the
    server closes it, counting the closes and what the server said first."""
    while not load.stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            load.idle[f"connect failed: {type(e).__name__}"] += 1
            await asyncio.sleep(1.0)
            continue
        load.idle["opened"] += 1
        opened = time.monotonic()
        try:
            if partial:
                writer.write(b"GET /+api HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                await writer.drain()
            stop = asyncio.ensure_future(load.stop.wait())
            read = asyncio.ensure_future(reader.read(256))
            await asyncio.wait((stop, read), return_when=asyncio.FIRST_COMPLETED)
            if read.done():
                first = read.result()
                load.idle["closed by server"] += 1
                load.idle_open_s.append(time.monotonic() - opened)
                if first.startswith(b"HTTP/"):
                    load.idle[f"answered {first[9:12].decode(errors='replace')} then closed"] += 1
            else:
                read.cancel()
            stop.cancel()
        except OSError as e:
            load.idle[f"reset: {type(e).__name__}"] += 1
        finally:
            writer.close()
        await asyncio.sleep(random.uniform(0.5, 1.5))  # a server that closes at once is not hammered


# ---------------------------------------------------------------------------
# sampling the server

def read_proc(pid: int) -> dict | None:
    """Memory, threads, fds and CPU of one process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    tick = os.sysconf("SC_CLK_TCK")
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "hwm_mib": int(fields["VmHWM"].split()[0]) / 1024,
            "threads": int(fields["Threads"]), "fds": fds,
            "cpu_s": (int(stat[11]) + int(stat[12])) / tick}


def process_tree(pid: int) -> list[int]:
    """*pid* and its descendants: a server may run worker processes, and their memory counts."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in task.read_text().split()]
    return tree


def read_tree(pid: int) -> dict | None:
    """read_proc summed over the server's process tree (one process for the landed server)."""
    parts = [s for s in map(read_proc, process_tree(pid)) if s]
    if not parts:
        return None
    total = {k: sum(s[k] for s in parts) for k in parts[0]}
    total["processes"] = len(parts)
    return total


async def sampler(load: Load, server: ServerProcess, samples: list, t0: float, death: dict) -> None:
    while not load.stop.is_set():
        if server.proc.poll() is not None:
            death.update(at_s=round(time.monotonic() - t0, 1), code=server.proc.returncode)
            load.stop.set()
            return
        s = read_tree(server.proc.pid)
        if s:
            samples.append({"t": round(time.monotonic() - t0, 1), **s})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.stop.wait(), 1.0)


async def lag_meter(load: Load, every: float = 0.1) -> None:
    """How late the event loop wakes up: if the generator itself is overloaded, its latencies
    are its own, not the server's (the probe runs in its own process for that reason)."""
    while not load.stop.is_set():
        start = time.monotonic()
        await asyncio.sleep(every)
        load.loop_lag.append(time.monotonic() - start - every)


async def run_load(load: Load, server: ServerProcess, mix: dict[str, int], idle: int, duration: float,
                   samples: list, death: dict) -> float:
    """Run every client until *duration* passes or the server dies; the seconds it ran."""
    t0 = time.monotonic()
    sessions = []
    tasks = []

    def session() -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, limit_per_host=1))
        sessions.append(s)
        return s

    tasks.append(asyncio.ensure_future(sampler(load, server, samples, t0, death)))
    tasks.append(asyncio.ensure_future(lag_meter(load)))
    for k in range(idle):
        tasks.append(asyncio.ensure_future(idle_socket(load, server.port, partial=k % 2 == 1)))
    for i in range(mix["uploads"]):
        tasks.append(asyncio.ensure_future(uploader(load, session(), i)))
    for _ in range(mix["pages"]):
        tasks.append(asyncio.ensure_future(page_reader(load, session())))
    for _ in range(mix["files"]):
        tasks.append(asyncio.ensure_future(downloader(load, session())))
    for _ in range(mix["longpolls"]):
        tasks.append(asyncio.ensure_future(long_poller(load, session())))
    for _ in range(mix["hanging"]):
        tasks.append(asyncio.ensure_future(hanging_reader(load, session())))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.stop.wait(), duration)
    ran = time.monotonic() - t0
    load.stop.set()
    done, pending = await asyncio.wait(tasks, timeout=2)
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            load.failures.append(f"client task crashed: {t.exception()!r}")
    for s in sessions:
        await s.close()
    return ran


# ---------------------------------------------------------------------------
# set-up and verification

def setup_server(server: ServerProcess, hang_url: str) -> str:
    """root/hang (a mirror of the hanging upstream) and soak/dev over root/pypi; the soak
    user's login token."""
    root = server.login("root", server.root_password)
    r = server.api("PUT", "/root/hang", json={"type": "mirror", "mirror_url": hang_url}, auth=root)
    if r.status_code not in (200, 201):
        raise SystemExit(f"creating root/hang (a mirror of {hang_url}) failed: {r.status_code} {r.text}\n"
                         "a server that refuses loopback upstreams needs the option that allows "
                         "them: pass it with --server-arg=...")
    r = server.api("PUT", f"/{USER}", json={"password": PASSWORD}, auth=root)  # root: works under any
    if r.status_code != 201:  # restriction of who may create users
        raise SystemExit(f"creating the user {USER} failed: {r.status_code} {r.text}")
    user = server.login(USER, PASSWORD)
    server.create_index(user, STAGE, bases=["root/pypi"])
    return user[1]


def verify_uploads(url: str, acked: list[dict], budget: float = 600) -> dict:
    """Is every acknowledged upload listed with its sha256, and do its bytes hash to it? One
    not checked within *budget* seconds counts as lost: a server too slow to show it is not
    showing it."""
    deadline = time.monotonic() + budget
    s = requests.Session()
    by_project = defaultdict(list)
    for a in acked:
        by_project[a["project"]].append(a)
    lost = []
    for project, uploads in by_project.items():
        if time.monotonic() > deadline:
            lost += [f"{a['filename']}: not checked within {budget:g} s" for a in uploads]
            continue
        try:
            r = s.get(f"{url}/{USER}/{STAGE}/+simple/{project}/", headers={"Accept": JSON_ACCEPT}, timeout=60)
            listed = {f["filename"]: f for f in r.json()["files"]} if r.status_code == 200 else {}
        except (requests.RequestException, ValueError) as e:
            lost += [f"{a['filename']}: page unreadable ({e})" for a in uploads]
            continue
        for a in uploads:
            f = listed.get(a["filename"])
            if f is None:
                lost.append(f"{a['filename']}: not listed (page answered {r.status_code})")
                continue
            if f["hashes"]["sha256"] != a["sha256"]:
                lost.append(f"{a['filename']}: listed with another sha256")
                continue
            page = f"{url}/{USER}/{STAGE}/+simple/{project}/"
            try:
                d = s.get(requests.compat.urljoin(page, f["url"]).split("#")[0], timeout=60)
                ok = d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == a["sha256"]
            except requests.RequestException:
                ok = False
            if not ok:
                lost.append(f"{a['filename']}: bytes missing or different")
    return {"checked": len(acked), "lost": len(lost), "examples": lost[:10]}


# ---------------------------------------------------------------------------
# figures

def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summarise(load: Load, mix: dict, probes: list, samples: list, ran: float, gen_cpu: float,
              helper_cpu: float | None) -> dict:
    per_kind = {}
    for kind in KINDS:
        hist = Counter()
        for (k, _what, status), n in load.statuses.items():
            if k == kind:
                hist[str(status)] += n
        per_kind[kind] = {
            "clients": mix[kind], "requests": sum(hist.values()),
            "statuses": dict(sorted(hist.items())),
            "our_5xx": sum(n for (k, _, s), n in load.statuses.items() if k == kind and is_our_5xx(k, s)),
            "gateway": sum(n for (k, _, s), n in load.statuses.items()
                           if k == kind and kind == "hanging" and s in GATEWAY),
            "unanswered": sum(n for (k, w, s), n in load.statuses.items()
                              if k == kind and isinstance(s, str)),
            "median_s": round(statistics.median(load.latencies[kind]), 4) if load.latencies[kind] else None,
            "p99_s": round(pct(load.latencies[kind], 0.99), 4) if load.latencies[kind] else None,
            "retried_stale_keepalive": load.retried[kind],
            "in_flight_at_end": load.cut[kind],
        }
    answered = [p[1] for p in probes if p[1] is not None]
    bad_probes = [p for p in probes if p[1] is None or p[2] != 200 or p[1] >= PROBE_LIMIT]
    rss = [s["rss_mib"] for s in samples]
    return {
        "ran_s": round(ran, 1),
        "kinds": per_kind,
        "checks": {f"{c}: {s}": n for (c, s), n in sorted(load.checks.items())},
        "idle_sockets": dict(load.idle),
        "idle_open_before_close_s": {
            "median": round(statistics.median(load.idle_open_s), 1) if load.idle_open_s else None,
            "max": round(max(load.idle_open_s), 1) if load.idle_open_s else None},
        "probe": {
            "count": len(probes), "answered": len(answered),
            "median_s": round(statistics.median(answered), 4) if answered else None,
            "p99_s": round(pct(answered, 0.99), 4) if answered else None,
            "max_s": round(max(answered), 3) if answered else None,
            "not_200_or_over_1s": len(bad_probes),
            "first_bad_at_s": round(bad_probes[0][0], 1) if bad_probes else None,
            "over_1s": sum(1 for p in probes if p[1] is not None and p[1] >= PROBE_LIMIT),
            "unanswered": dict(Counter(p[2] for p in probes if p[1] is None)),
            "not_200": dict(Counter(str(p[2]) for p in probes if p[1] is not None and p[2] != 200)),
            "bad_examples": [list(p) for p in bad_probes[:5]],
        },
        "rss_mib": {
            "start": round(rss[0], 1) if rss else None,
            "median": round(statistics.median(rss), 1) if rss else None,
            "max": round(max(rss), 1) if rss else None,
            "end": round(rss[-1], 1) if rss else None,
            "hwm_end": round(samples[-1]["hwm_mib"], 1) if samples else None,
        },
        "server_fds_max": max((s["fds"] for s in samples), default=None),
        "server_threads_max": max((s["threads"] for s in samples), default=None),
        "server_processes_max": max((s.get("processes", 1) for s in samples), default=None),
        "server_cpu_s": round(samples[-1]["cpu_s"] - samples[0]["cpu_s"], 1) if len(samples) > 1 else None,
        "generator_cpu_s": round(gen_cpu, 1),
        "generator_loop_lag_s": {"p99": round(pct(load.loop_lag, 0.99), 3) if load.loop_lag else None,
                                 "max": round(max(load.loop_lag), 3) if load.loop_lag else None},
        "upstreams_cpu_s": round(helper_cpu, 1) if helper_cpu is not None else None,
        "failures_sample": load.failures[:20],
    }


def judge(res: dict, rss_bound: float) -> list[tuple[str, str, str, bool]]:
    """(criterion, bound, measured, passed) rows."""
    k = res["kinds"]
    our5xx = sum(v["our_5xx"] for v in k.values())
    unanswered = sum(v["unanswered"] for v in k.values())
    mism = sum(n for name, n in res["checks"].items() if name.endswith(": FAILED"))
    checked = sum(res["checks"].values())
    p = res["probe"]
    up = res["uploads"]
    death = res["server_death"]
    rows = [
        ("5xx from our side", "0", f"{our5xx:,}", our5xx == 0),
        ("requests without an answer", "0", f"{unanswered:,}", unanswered == 0),
        ("downloads not matching their sha256, or acknowledged uploads not listed, during the load", "0",
         f"{mism:,} of {checked:,} checks", mism == 0),
        ("server alive for the whole run", "yes",
         "yes" if not death else f"no: exited {death['code']} at {death['at_s']} s", not death),
        ("SIGTERM stop, then start on the same dir", "exit 0, starts",
         res["restart"]["summary"], res["restart"]["ok"]),
        ("acknowledged uploads lost (before / after restart)", "0 / 0",
         f"{up['before_restart']['lost'] if up['before_restart'] else 'n/a'} / "
         f"{up['after_restart']['lost'] if up['after_restart'] else 'n/a'} of {up['acknowledged']:,}",
         (up["before_restart"] is None or up["before_restart"]["lost"] == 0)
         and up["after_restart"] is not None and up["after_restart"]["lost"] == 0),
        ("fresh `/+api` answered 200 in < 1 s", f"every probe ({p['count']:,})",
         f"{p['not_200_or_over_1s']:,} not ({sum(p['unanswered'].values()):,} unanswered); "
         f"max answered {_ms(p['max_s'])}", p["not_200_or_over_1s"] == 0 and p["count"] > 0),
        ("server RSS (VmRSS, sampled each second)", f"≤ {rss_bound:.0f} MiB",
         f"max {res['rss_mib']['max']} MiB", res["rss_mib"]["max"] is not None
         and res["rss_mib"]["max"] <= rss_bound),
    ]
    return rows


def render(res: dict, rows: list) -> str:
    env = res["env"]
    kinds = res["kinds"]
    lines = [
        START,
        f"## Soak: {sum(v['clients'] for v in kinds.values())} clients, {env['idle']:,} idle sockets, "
        "a hanging upstream (issue 24)",
        "",
        f"Measured by `{env['command']}` on {env['date']} ({env['cpus']} CPUs, a shared machine; load "
        f"average {env['loadavg_start']} at the start, {env['loadavg_end']} at the end). "
        f"{'QUICK run, ' if env['quick'] else ''}{res['ran_s']} s of load of the {env['duration']:g} s "
        f"planned{' (stopped early: the server died)' if res['server_death'] else ''}; server arguments: "
        f"{' '.join(f'`{a}`' for a in env['server_args']) or 'none'}; open-file limit "
        f"{env['server_nofile']} for the server, {env['nofile']} for the generator.",
        "",
        "| criterion | bound | measured | |",
        "|---|---|---|---|",
        *(f"| {c} | {b} | {m} | {'ok' if ok else '**FAIL**'} |" for c, b, m, ok in rows),
        "",
        "| kind | clients | answered or failed | answers (status: count) | median | p99 | in flight at the end |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, v in kinds.items():
        hist = ", ".join(f"{s}: {n:,}" for s, n in v["statuses"].items())
        med = f"{v['median_s'] * 1000:.0f} ms" if v["median_s"] is not None else "–"
        p99 = f"{v['p99_s'] * 1000:.0f} ms" if v["p99_s"] is not None else "–"
        lines.append(f"| {kind} | {v['clients']} | {v['requests']:,} | {hist} | {med} | {p99} | "
                     f"{v['in_flight_at_end']} |")
    idle = ", ".join(f"{k}: {v:,}" for k, v in res["idle_sockets"].items())
    if res["idle_open_before_close_s"]["median"] is not None:
        idle += (f"; open {res['idle_open_before_close_s']['median']} s (median), "
                 f"{res['idle_open_before_close_s']['max']} s (max) before the server closed them")
    p = res["probe"]
    rss = res["rss_mib"]
    up = res["uploads"]
    lines += [
        f"| idle sockets | {env['idle']} | – | {idle} | – | – | – |",
        "",
        f"* `/+api` probe (fresh connection every {PROBE_EVERY} s, own process): {p['count']:,} probes, "
        f"{p['answered']:,} answered; median {_ms(p['median_s'])}, p99 {_ms(p['p99_s'])}, "
        f"max {_ms(p['max_s'])}; {p['not_200_or_over_1s']:,} not 200 within 1 s"
        + (f" (first at {p['first_bad_at_s']} s: {p['over_1s']:,} answered later, not answered: "
           f"{_counts(p['unanswered'])}, not 200: {_counts(p['not_200'])})" if p["first_bad_at_s"] is not None
           else "")
        + ".",
        f"* Server RSS: {rss['start']} MiB at the start of the load, median {rss['median']}, max "
        f"{rss['max']}, {rss['end']} at the end (VmHWM {rss['hwm_end']}); at most {res['server_fds_max']} open fds and "
        f"{res['server_threads_max']} threads"
        f" in {res.get('server_processes_max') or 1} process(es).",
        f"* Uploads: {up['acknowledged']:,} acknowledged (200); lost before the restart: "
        f"{up['before_restart']['lost'] if up['before_restart'] else 'not checked (server down)'}, "
        f"after: {up['after_restart']['lost'] if up['after_restart'] else 'not checked'}; "
        f"restart: {res['restart']['summary']}.",
        f"* CPU during the load: server {res['server_cpu_s'] if res['server_cpu_s'] is not None else '–'} s, load generator {res['generator_cpu_s']} s, "
        f"upstreams {res['upstreams_cpu_s']} s (of {res['ran_s']} s × {env['cpus']} CPUs); the generator's "
        f"event loop woke late by {_ms(res.get('generator_loop_lag_s', {}).get('p99'))} (p99), "
        f"{_ms(res.get('generator_loop_lag_s', {}).get('max'))} (max); hanging "
        f"upstream: {res['hanging_upstream'].get('accepted', 0):,} connections, at most "
        f"{res['hanging_upstream'].get('max_open', 0):,} open at once.",
        "",
        "Counting: a 5xx is from our side unless it is a 502/503/504 answered to a reader of "
        "`root/hang` (a mirror whose upstream accepts and never answers; it closes after "
        f"{env['hang_close']:g} s): that answer tells the truth about the upstream. A request "
        f"with no answer (connection error, or none within {CLIENT_TIMEOUT:g} s; long-polls "
        "their timeout + 30 s) fails for every kind. A GET whose kept-alive connection the "
        "server closed under it is retried once, as pip does (counted, not failed); a 4xx is "
        "never a failure. Uploads pause in every other 30 s so that long-polls then wait their "
        "whole timeout. Half the "
        "idle sockets send a partial request (`GET /+api HTTP/1.1`, `Host`), half nothing; "
        "each one the server closes is opened again.",
        END,
    ]
    return "\n".join(lines) + "\n"


def _counts(c: dict) -> str:
    return ", ".join(f"{k} × {n:,}" for k, n in c.items()) or "0"


def _ms(v) -> str:
    return "–" if v is None else f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n\n"
    if START in text and END in text:
        text = text[:text.index(START)] + section.rstrip("\n") + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def parse_mix(text: str, clients: int) -> dict[str, int]:
    """Kind shares from ``--mix`` scaled to *clients* in total (largest remainder)."""
    shares = {k: 0.0 for k in KINDS}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in shares:
            raise SystemExit(f"--mix: unknown kind {k!r} (kinds: {', '.join(KINDS)})")
        shares[k.strip()] = float(v)
    total = sum(shares.values())
    exact = {k: clients * v / total for k, v in shares.items()}
    mix = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - mix[k], reverse=True)[:clients - sum(mix.values())]:
        mix[k] += 1
    return mix


@contextlib.contextmanager
def nofile_for_children(limit: int | None):
    """Start child processes with this open-file soft limit (they inherit it at fork)."""
    if limit is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def shown_args(args: list[str]) -> list[str]:
    """The command line without where the figures went (``--json PATH``)."""
    out, skip = [], False
    for arg in args:
        if skip or arg.startswith("--json="):
            skip = False
            continue
        if arg == "--json":
            skip = True
            continue
        out.append(arg)
    return out


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    ap.add_argument("--quick", action="store_true", help="60 s of load (a smoke run)")
    ap.add_argument("--clients", type=int, default=200, help="concurrent clients in all (default 200)")
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"shares of the clients (default {DEFAULT_MIX})")
    ap.add_argument("--idle", type=int, default=1000, help="idle sockets held open (default 1000)")
    ap.add_argument("--think", type=float, default=1.0, help="scale every client's think time (default 1)")
    ap.add_argument("--hang-close", type=float, default=120,
                    help="the hanging upstream closes a connection after this many seconds (default 120)")
    ap.add_argument("--rss-bound", type=float, default=400, help="server RSS bound in MiB (default 400)")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="an extra argument for `devpi server` (repeatable), e.g. --server-arg=--threads=16")
    ap.add_argument("--server-nofile", type=int, metavar="N",
                    help="the server's open-file soft limit (default: the hard limit, as for the generator)")
    ap.add_argument("--workdir", type=Path, help="server dir parent (default: a new temp dir)")
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--write-doc", action="store_true", help="put the figures into doc/performance.md")
    ap.add_argument("--from-json", type=Path, help="only re-render (and --write-doc) figures saved by --json")
    a = ap.parse_args(argv)
    if a.from_json:
        res = json.loads(a.from_json.read_text())
        rows = judge(res, res["env"]["rss_bound"])
        section = render(res, rows)
        print(section)
        if a.write_doc:
            write_doc(section)
        return 1 if not all(ok for *_, ok in rows) else 0
    duration = 60.0 if a.quick else a.duration
    mix = parse_mix(a.mix, a.clients)
    nofile = raise_nofile()
    env = {"command": "python tests/bench/soak.py " + shlex.join(shown_args(sys.argv[1:] if argv is None else argv)),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
           "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "quick": a.quick,
           "duration": duration, "server_args": a.server_arg, "idle": a.idle,
           "nofile": nofile, "server_nofile": a.server_nofile or nofile, "rss_bound": a.rss_bound,
           "hang_close": a.hang_close}
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="devpi-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {duration:g} s, clients {mix}, {a.idle} idle sockets, server args {a.server_arg}, "
          f"work dir {workdir}", flush=True)

    ctx = multiprocessing.get_context("spawn")
    up_conn, child_conn = ctx.Pipe()
    helper = ctx.Process(target=upstreams_main, args=(child_conn, a.hang_close, UPSTREAM_PROJECTS), daemon=True)
    helper.start()
    info = up_conn.recv()
    server = ServerProcess(workdir / "server", mirror_url=info["url"], args=tuple(a.server_arg))
    probe_proc = None
    try:
        with nofile_for_children(a.server_nofile):
            server.start()
        print(f"soak: server {server.url} (pid {server.proc.pid}); upstream {info['url']}, "
              f"hanging upstream {info['hang_url']}", flush=True)
        token = setup_server(server, info["hang_url"])
        probe_conn, probe_child = ctx.Pipe()
        probe_proc = ctx.Process(target=probe_main, args=(probe_child, server.port, PROBE_EVERY, 30.0),
                                 daemon=True)
        probe_proc.start()
        if not probe_conn.poll(60) or probe_conn.recv() != "ready":
            raise SystemExit("the probe process did not start")
        samples: list = []
        death: dict = {}
        gen0 = os.times()
        helper_cpu0 = read_proc(helper.pid)
        load: Load | None = None

        async def go() -> float:
            nonlocal load
            load = Load(url=server.url, token=token, mirror_files=info["files"], stop=asyncio.Event(),
                        think_scale=a.think)
            return await run_load(load, server, mix, a.idle, duration, samples, death)

        ran = asyncio.run(go())
        gen1 = os.times()
        helper_cpu1 = read_proc(helper.pid)
        probe_conn.send("stop")
        probes = probe_conn.recv() if probe_conn.poll(40) else []
        up_conn.send("stats")
        hang_stats = up_conn.recv()
        print(f"soak: load ran {ran:.0f} s; verifying {len(load.acked)} acknowledged uploads", flush=True)
        res = summarise(load, mix, probes, samples, ran, (gen1.user + gen1.system) - (gen0.user + gen0.system),
                        helper_cpu1["cpu_s"] - helper_cpu0["cpu_s"] if helper_cpu0 and helper_cpu1 else None)
        res["hanging_upstream"] = hang_stats["hanging"]
        res["server_death"] = death
        before = verify_uploads(server.url, load.acked) if not death else None
        stop_start = time.monotonic()
        code = server.stop()
        stop_s = time.monotonic() - stop_start
        try:
            with nofile_for_children(a.server_nofile):
                server.start()
            after = verify_uploads(server.url, load.acked)
            started = True
        except RuntimeError as e:
            after, started = None, False
            print(f"soak: restart failed: {e}", flush=True)
        ok = started and (death or code == 0)
        res["restart"] = {"ok": bool(ok), "exit_code": code, "stop_s": round(stop_s, 1), "started": started,
                          "summary": (f"exit {code} after SIGTERM in {stop_s:.1f} s" if not death
                                      else "server had died") + (", started again" if started
                                                                 else ", did NOT start again")}
        res["uploads"] = {"acknowledged": len(load.acked), "before_restart": before, "after_restart": after}
        env["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        res["env"] = env
        rows = judge(res, a.rss_bound)
        res["criteria"] = [{"criterion": c, "bound": b, "measured": m, "ok": ok} for c, b, m, ok in rows]
        section = render(res, rows)
        print(section)
        if res["failures_sample"]:
            print("first failures:\n  " + "\n  ".join(res["failures_sample"]))
        for label, check in (("before", before), ("after", after)):
            if check and check["examples"]:
                print(f"lost uploads ({label} restart):\n  " + "\n  ".join(check["examples"]))
        if death:
            print("the end of the server's log:\n" + server.log_text()[-3000:])
        if a.json:
            a.json.write_text(json.dumps(res, indent=2, default=str))
        if a.write_doc:
            write_doc(section)
        failed = [c for c, _, _, ok in rows if not ok]
        print("soak: " + ("all criteria met" if not failed else "FAILED: " + "; ".join(failed)))
        return 1 if failed else 0
    finally:
        server.kill()
        if probe_proc is not None and probe_proc.is_alive():
            probe_proc.terminate()
        with contextlib.suppress(OSError):
            up_conn.send("stop")
        helper.join(10)
        if helper.is_alive():
            helper.terminate()


if __name__ == "__main__":
    sys.exit(main())
