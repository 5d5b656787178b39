"""The server's counters for ``GET /+metrics`` (doc/operations.md, "Metrics").

Counters and histograms live here, in one registry of this process, and are incremented
in place where the event happens (a few hundred nanoseconds, thread-safe: prometheus_client
locks per value). Gauges (serial, database pool, page cache, lanes) are not kept up to date
at all: the scrape computes them (api/metrics.py).

No label ever carries an index, project or user name: those may be read-restricted
(``acl_read``), and they would make the number of series unbounded. Every label here takes
its values from a small set the code fixes (a route template, a method, a status code).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

disable_created_metrics()  # no ``_created`` series: half the scrape's size, of no use to the server's graphs
REGISTRY = CollectorRegistry(auto_describe=False)

# seconds: an answer from the page cache takes well under a millisecond, an upload may take minutes
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "PUSH", "OPTIONS"))
UNMATCHED = "(unmatched)"  # no route: a 404 of the router, or a refusal before routing
MAX_ROUTE_LABELS = 512  # route templates are the code's; this only guards against surprises

REQUESTS = Counter("devpi_http_requests", "HTTP requests answered, by route template, method and status",
                   ["route", "method", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("devpi_http_request_duration_seconds",
                            "Seconds from a request's head to its response's head, by route template",
                            ["route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
PAGE_CACHE = Counter("devpi_simple_page_cache_requests",
                     "Simple-page requests answered from the page cache (hit) or rendered (miss)",
                     ["result"], registry=REGISTRY)
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

_children: dict[tuple[str, str, str], tuple] = {}  # (route, method, status) -> (counter, histogram)


def observe_request(route: str, method: str, status: str, seconds: float) -> None:
    """Count one answered request (``status``: the three digits). The label children are
    looked up once per (route, method, status) and kept: per request this is one dict lookup,
    one increment and one observation."""
    key = (route, method, status)
    children = _children.get(key)
    if children is None:
        children = _new_children(route, method, status)
    children[0].inc()
    children[1].observe(seconds)


def _new_children(route: str, method: str, status: str) -> tuple:
    key = (route, method, status)
    if method not in METHODS:
        method = "other"
    if not (len(status) == 3 and status.isdigit()):
        status = "other"
    if len(_children) >= MAX_ROUTE_LABELS * 4:  # never reached by the server's own routes
        route = "(other)"
    children = (REQUESTS.labels(route, method, status), REQUEST_SECONDS.labels(route))
    if len(_children) < MAX_ROUTE_LABELS * 8:
        _children[key] = children
    return children
