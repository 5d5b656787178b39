"""``GET /+metrics`` (Prometheus text format) and ``GET /+health`` (ready or not, and why).

Both are scraped every few seconds, so both are cheap: the metrics are counters kept in
place (runtime/metrics.py) plus a handful of gauges read here at scrape time; the health
check is one trivial query (at most one at a time, bounded by ``STORAGE_PROBE_TIMEOUT``) and
one ``statvfs``. Neither names an index, a project or a user (they may be read-restricted):
upstream trouble is reported as counts of mirrors.

Who may read ``/+metrics``: the addresses ``--metrics-allow`` names (default: loopback; the
client address behind a trusted proxy, see http/trusted_proxies.py), and root from anywhere.
``/+health`` is open to anyone: a load balancer must be able to ask, and it tells nothing
beyond "ready" and a reason.
"""
from __future__ import annotations

import ipaddress
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

import bottle
from sqlalchemy import text

from ..core import Core
from ..http.trusted_proxies import parse_allow
from ..runtime.metrics import REGISTRY
from .errors import reason_phrase
from .httpkit import APIError, identity, json_body

# the classic text format, which every Prometheus reads (newer clients label theirs 1.0.0)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
STORAGE_PROBE_TIMEOUT = 2.0  # seconds /+health waits for its trivial query before saying "unready"


class MetricsGate:
    """Whether a request may read the metrics: its client address, or root's credentials."""

    def __init__(self, core: Core, spec: str):
        self.core = core
        self.networks = parse_allow(spec)

    def refusal(self, request: bottle.BaseRequest) -> APIError | None:
        addr = self.core.proxies.client_addr(request.environ)
        try:
            ip = ipaddress.ip_address(addr.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip is not None and any(ip in net for net in self.networks):
            return None
        ident = identity(self.core, request)
        if ident is not None and ident.user == "root" and ident.scope is None:
            return None
        if ident is None:
            return APIError(401, "metrics: only root, or clients from the addresses --metrics-allow names",
                            {"WWW-Authenticate": 'Basic realm="devpi"'})
        return APIError(403, "metrics: only root, or clients from the addresses --metrics-allow names")


class CoreGauges:
    """The gauges of one server, computed when scraped (a prometheus_client collector)."""

    def __init__(self, core: Core):
        self.core = core

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        core = self.core
        yield GaugeMetricFamily("devpi_serial", "The last committed serial", value=core.storage.current_serial)
        yield GaugeMetricFamily("devpi_uptime_seconds", "Seconds since the server started",
                                value=time.time() - core.started)
        pool = core.storage.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        if checked_out is not None:  # a QueuePool (SQLite and PostgreSQL both use one)
            use = GaugeMetricFamily("devpi_db_pool_connections", "Database connections by state",
                                    labels=["state"])
            use.add_metric(["in_use"], checked_out())
            use.add_metric(["idle"], pool.checkedin())
            yield use
            yield GaugeMetricFamily("devpi_db_pool_size", "Database connections the pool keeps open",
                                    value=pool.size())
        stats = core.page_cache.stats()
        yield GaugeMetricFamily("devpi_simple_page_cache_bytes", "Bytes of rendered simple pages kept",
                                value=stats["bytes"])
        yield GaugeMetricFamily("devpi_simple_page_cache_max_bytes", "--page-cache-size",
                                value=stats["max_bytes"])
        yield GaugeMetricFamily("devpi_simple_page_cache_pages", "Rendered simple pages kept",
                                value=stats["pages"])
        yield from disk_metrics(core)
        states = upstream_states(core)
        mirrors = GaugeMetricFamily("devpi_mirrors_upstream", "Mirrors in use, by their upstream's state "
                                    "(ok, slow: requests stop waiting for it, down: unreachable)",
                                    labels=["state"])
        for state in ("ok", "slow", "down"):
            mirrors.add_metric([state], states[state])
        yield mirrors


def disk_metrics(core: Core) -> Any:
    """The blob store and mirror cache figures the disk keeper (runtime/disk_keeper.py) and
    this process's collections keep on ``core.disk``: read, not computed, at scrape time."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    disk = core.disk
    yield GaugeMetricFamily("devpi_blob_store_bytes", "Bytes of all blobs, as of the last disk check",
                            value=disk.blob_store_bytes)
    yield GaugeMetricFamily("devpi_blob_store_blobs", "Blobs in the store, as of the last disk check",
                            value=disk.blob_count)
    yield GaugeMetricFamily("devpi_mirror_cache_bytes", "Bytes of blobs only mirror files name (what "
                            "eviction can free), as of the last disk check", value=disk.mirror_cache_bytes)
    yield GaugeMetricFamily("devpi_mirror_cache_budget_bytes", "--mirror-cache-size (0: no budget)",
                            value=disk.mirror_cache_budget or 0)
    yield CounterMetricFamily("devpi_mirror_evictions", "Mirror files evicted by this process",
                              value=disk.evictions_total)
    yield CounterMetricFamily("devpi_mirror_evicted_bytes", "Bytes of mirror files evicted by this process",
                              value=disk.evicted_bytes_total)
    yield CounterMetricFamily("devpi_gc_runs", "Blob collections run by this process", value=disk.gc_runs_total)
    yield CounterMetricFamily("devpi_gc_deleted_blobs", "Unreferenced blobs deleted by this process",
                              value=disk.gc_deleted_total)
    yield CounterMetricFamily("devpi_gc_deleted_bytes", "Bytes of unreferenced blobs deleted by this process",
                              value=disk.gc_deleted_bytes_total)
    yield GaugeMetricFamily("devpi_gc_last_run_timestamp_seconds", "When this process last collected "
                            "(unix time; 0: not yet)", value=disk.last_gc or 0)


def upstream_states(core: Core) -> dict[str, int]:
    """How many of the mirrors in use (their repository made) are ok, slow or down."""
    counts = {"ok": 0, "slow": 0, "down": 0}
    for repo in list(core._repos.values()):
        state_of = getattr(repo, "upstream_state", None)
        if state_of is not None:
            counts[state_of() or "ok"] += 1
    return counts


class StorageProbe:
    """``SELECT 1`` in a thread of its own, waited for at most ``timeout``: a database that
    hangs makes /+health answer 503 at once, and never holds more than this one thread."""

    def __init__(self, core: Core, timeout: float = STORAGE_PROBE_TIMEOUT):
        self.core = core
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running: Future | None = None

    def check(self) -> str | None:
        """None if the storage answered, else why not."""
        with self._lock:
            fut = self._running
            if fut is None:
                fut = self._running = Future()
                threading.Thread(target=self._run, args=(fut,), name="health-probe", daemon=True).start()
        try:
            return fut.result(self.timeout)
        except TimeoutError:
            return f"storage did not answer a trivial query within {self.timeout:g} s"

    def _run(self, fut: Future) -> None:
        try:
            with self.core.storage.read() as conn:
                conn.execute(text("SELECT 1")).scalar()
            result = None
        except Exception as e:
            result = f"storage unreachable: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        with self._lock:
            self._running = None
        fut.set_result(result)


def disk_free(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def health(core: Core, probe: StorageProbe, min_free: int) -> tuple[int, dict[str, Any]]:
    """(200 or 503, the document /+health answers)."""
    reasons = []
    problem = probe.check()
    if problem:
        reasons.append(problem)
    lag = core.replication.health_problem() if core.replication else None
    if lag:
        reasons.append(lag)
    paths = {str(core.config.serverdir)}
    blob_root = getattr(core.blobs, "root", None)
    if blob_root is not None and os.path.isdir(blob_root):
        paths.add(str(blob_root))
    free = None
    for path in sorted(paths):
        try:
            here = disk_free(path)
        except OSError as e:
            reasons.append(f"cannot read the free space of the server dir: {e.strerror}")
            continue
        free = here if free is None else min(free, here)
        if here < min_free:
            reasons.append(f"disk space low: {here // (1 << 20)} MiB free, --min-free-space is "
                           f"{min_free // (1 << 20)} MiB")
    doc: dict[str, Any] = {"status": "unready" if reasons else "ready",
                           "serial": core.storage.current_serial,
                           "disk": {"free": free, "min_free": min_free},
                           "upstream": upstream_states(core)}  # information only: never a failure
    if reasons:
        doc["message"] = "; ".join(reasons)
    return (503 if reasons else 200), doc


def _json(status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> bottle.HTTPResponse:
    resp = bottle.HTTPResponse(json_body(doc), headers={"Cache-Control": "no-store", **(headers or {})})
    resp.status = f"{status} {reason_phrase(doc['message'])}" if "message" in doc else status
    resp.content_type = "application/json"
    return resp


def install(app: bottle.Bottle, core: Core) -> None:
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    req = bottle.request
    gate = MetricsGate(core, core.config.metrics_allow)
    per_server = CollectorRegistry(auto_describe=False)  # this server's gauges; the counters are the process's
    per_server.register(CoreGauges(core))
    ProcessCollector(registry=per_server)  # memory, CPU, open files
    probe = StorageProbe(core)

    @app.route("/+metrics", "GET")
    def metrics():
        refused = gate.refusal(req)
        if refused is not None:
            raise refused
        body = generate_latest(REGISTRY) + generate_latest(per_server)
        return bottle.HTTPResponse(body, headers={"Content-Type": TEXT_FORMAT, "Cache-Control": "no-store"})

    @app.route("/+health", ["GET", "HEAD"])
    def health_view():
        status, doc = health(core, probe, core.config.min_free_space)
        return _json(status, doc, {"Retry-After": "5"} if status != 200 else None)
