"""The server's counters for ``GET /+metrics`` (doc/operations.md, "Metrics").

Counters and histograms live here, in one registry of this process, and are incremented
in place where the event happens. Those on every request's path (requests, their latency,
page-cache hits) are counted per thread without a lock (:class:`RequestCounts`,
:class:`ThreadCounter`) and summed when scraped; the others are prometheus_client's own
(thread-safe, a lock per value: about a microsecond). Gauges (serial, database pool, page
cache) are not kept up to date at all: the scrape computes them (api/ops_status.py).

No label ever carries an index, project or user name: those may be read-restricted
(``acl_read``), and they would make the number of series unbounded. Every label here takes
its values from a small set the code fixes (a route template, a method, a status code).
"""
from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.utils import floatToGoString

disable_created_metrics()  # no ``_created`` series: half the scrape's size, of no use to the server's graphs
REGISTRY = CollectorRegistry(auto_describe=False)

# seconds: an answer from the page cache takes well under a millisecond, an upload may take minutes
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "PUSH", "OPTIONS"))
UNMATCHED = "(unmatched)"  # no route: a 404 of the router, or a refusal before routing
MAX_ROUTE_LABELS = 512  # route templates are the code's; this only guards against surprises



class ThreadCounter:
    """A labelled counter whose increments take no lock: each thread adds to a table of its
    own, a scrape sums them (for counters on the cached-page lane's path). The same use as
    prometheus_client's ``Counter``: ``.labels(*values).inc()``."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._local = threading.local()
        self._tables: list[dict[tuple[str, ...], float]] = []
        self._known: set[tuple[str, ...]] = set()  # shown at 0 before the first increment
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: str) -> _ThreadCounterChild:
        self._known.add(values)
        return _ThreadCounterChild(self, values)

    def _table(self) -> dict[tuple[str, ...], float]:
        table: dict[tuple[str, ...], float] = {}
        self._local.table = table
        with self._lock:
            self._tables.append(table)
        return table

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        totals = dict.fromkeys(self._known, 0.0)
        with self._lock:
            tables = list(self._tables)
        for table in tables:
            for values, n in list(table.items()):
                totals[values] = totals.get(values, 0.0) + n
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, n in sorted(totals.items()):
            family.add_metric(list(values), n)
        yield family


class _ThreadCounterChild:
    __slots__ = ("counter", "values")

    def __init__(self, counter: ThreadCounter, values: tuple[str, ...]):
        self.counter, self.values = counter, values

    def inc(self, amount: float = 1.0) -> None:
        try:
            table = self.counter._local.table
        except AttributeError:
            table = self.counter._table()
        table[self.values] = table.get(self.values, 0.0) + amount


PAGE_CACHE = ThreadCounter("devpi_simple_page_cache_requests",
                           "Simple-page requests answered from the page cache (hit) or rendered (miss)",
                           ["result"], REGISTRY)
UPSTREAM_REQUESTS = Counter("devpi_upstream_requests", "Requests the server sent to upstream indexes",
                            registry=REGISTRY)
UPSTREAM_ERRORS = Counter("devpi_upstream_errors",
                          "Upstream requests that failed: no connection, a timeout, or a 5xx answer",
                          registry=REGISTRY)
UPSTREAM_BYTES = Counter("devpi_upstream_bytes", "Body bytes read from upstream indexes", registry=REGISTRY)
SINGLEFLIGHT_WAITS = Counter("devpi_singleflight_waits",
                             "Requests that waited for the same page render or upstream fetch another "
                             "request had begun, instead of doing it again", ["kind"], registry=REGISTRY)
UPLOADS = Counter("devpi_uploads", "Uploads accepted, by kind (file, doc, register, push, toxresult)",
                  ["kind"], registry=REGISTRY)
UPLOAD_BYTES = Counter("devpi_upload_bytes", "Bytes of uploaded release files and doc zips accepted",
                       registry=REGISTRY)
LOGINS = Counter("devpi_logins", "POST /+login, by result (ok, failed, throttled)", ["result"],
                 registry=REGISTRY)
AUTH_FAILURES = Counter("devpi_auth_failures",
                        "Requests whose credentials (password, token) were wrong, any URL", registry=REGISTRY)
TEST_RUNS = Counter("devpi_test_runs", "Test runs finished (devpi test), by status", ["status"],
                    registry=REGISTRY)

# the known label values exist from the start (at 0): a rate over them works before the first event
for _result in ("hit", "miss"):
    PAGE_CACHE.labels(_result)
for _kind in ("file", "doc", "register", "push", "toxresult"):
    UPLOADS.labels(_kind)
for _result in ("ok", "failed", "throttled"):
    LOGINS.labels(_result)
for _status in ("passed", "failed", "error", "interrupted"):
    TEST_RUNS.labels(_status)

class RequestCounts:
    """``devpi_http_requests_total`` (route, method, status) and the latency histogram
    ``devpi_http_request_duration_seconds`` (route), kept apart from prometheus_client's
    objects because they are on every request's path, the cached-page lane's included.

    Each thread counts in tables of its own (the event loop, each lane thread): no lock and
    nothing another thread writes, so an observation is a few list increments. A scrape
    (a prometheus_client collector) sums every thread's tables; it may see one request's
    count before its bucket, never a count going down.
    """

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.bounds = list(buckets)
        self._local = threading.local()
        self._tables: list[dict[tuple[str, str, str], list]] = []  # every thread's records, by labels
        self._lock = threading.Lock()  # taken once per thread, to add its table
        self._labels: dict[tuple[str, str, str], tuple[str, str, str]] = {}  # raw key -> bounded labels

    def observe(self, route: str, method: str, status: str, seconds: float) -> None:
        """One answered request (``status``: three digits; ``route``: a template, never a path)."""
        try:
            index = self._local.index
        except AttributeError:
            index = self._new_thread()
        record = index.get((route, method, status))
        if record is None:
            record = self._new_record(index, route, method, status)
        record[0] += 1
        record[1] += seconds
        record[2 + bisect_left(self.bounds, seconds)] += 1

    def _new_thread(self) -> dict:
        index: dict[tuple[str, str, str], list] = {}  # raw key -> record
        self._local.index, self._local.records = index, {}
        with self._lock:
            self._tables.append(self._local.records)
        return index

    def _new_record(self, index: dict, route: str, method: str, status: str) -> list:
        key = (route, method, status)
        labels = self._labels.get(key)
        if labels is None:
            labels = (route if len(self._labels) < MAX_ROUTE_LABELS * 4 else "(other)",
                      method if method in METHODS else "other",
                      status if len(status) == 3 and status.isdigit() else "other")
            if len(self._labels) < MAX_ROUTE_LABELS * 8:
                self._labels[key] = labels
        records = self._local.records
        record = records.get(labels)
        if record is None:
            record = records[labels] = [0, 0.0] + [0] * (len(self.bounds) + 1)
        if len(index) < MAX_ROUTE_LABELS * 8:
            index[key] = record
        return record

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        counts: dict[tuple[str, str, str], int] = {}
        by_route: dict[str, list] = {}
        with self._lock:
            tables = list(self._tables)
        for table in tables:
            for labels, record in list(table.items()):
                counts[labels] = counts.get(labels, 0) + record[0]
                total = by_route.setdefault(labels[0], [0, 0.0] + [0] * (len(self.bounds) + 1))
                for i, v in enumerate(record):
                    total[i] += v
        requests = CounterMetricFamily("devpi_http_requests",
                                       "HTTP requests answered, by route template, method and status",
                                       labels=["route", "method", "status"])
        for labels, n in sorted(counts.items()):
            requests.add_metric(list(labels), n)
        yield requests
        latency = HistogramMetricFamily("devpi_http_request_duration_seconds",
                                        "Seconds from a request's head to its response's head, by route template",
                                        labels=["route"])
        for route, total in sorted(by_route.items()):
            cumulative, buckets = 0, []
            for bound, n in zip([*map(floatToGoString, self.bounds), "+Inf"], total[2:], strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, sum_value=total[1])
        yield latency


REQUEST_COUNTS = RequestCounts()
REGISTRY.register(REQUEST_COUNTS)
observe_request = REQUEST_COUNTS.observe
