"""Attacks on GET /+metrics and GET /+health.

The attacker reads the metrics without being allowed to (anonymous, a plain user, root's
scoped token, a forged X-Forwarded-For, path variants), looks in them for the names of a
read-restricted index (``acl_read``), or floods the server with made-up paths and methods
to blow up the number of series (memory, and the monitoring behind it). What must hold:
401/403 with a JSON message for anyone but root and the allowed addresses; no user, index
or project name in either answer; a bounded, fixed set of label values whatever comes in.
"""
from __future__ import annotations

import base64
import random
import socket
import string
import subprocess
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support.dists import wheel_bytes

SECRET_USER, SECRET_INDEX, SECRET_PROJECT = "alicezq", "hiddenzq", "secretpkgzq"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def srv(engine_srv):
    """alicezq's index readable by her alone, with a project she has read; bob, a plain user."""
    s = engine_srv
    alice = s.create_user(SECRET_USER, "alice-pw")
    s.create_user("bobzq", "bob-pw")
    s.create_index(alice, SECRET_INDEX, acl_read=[SECRET_USER])
    filename, data = wheel_bytes(SECRET_PROJECT, "1.0")
    r = requests.post(f"{s.url}/{SECRET_USER}/{SECRET_INDEX}/", auth=alice, files={"content": (filename, data)},
                      data={":action": "file_upload", "name": SECRET_PROJECT, "version": "1.0"}, timeout=60)
    assert r.status_code == 200, r.text
    page = f"{s.url}/{SECRET_USER}/{SECRET_INDEX}/+simple/{SECRET_PROJECT}/"
    for _ in range(3):
        assert requests.get(page, auth=alice, timeout=30).status_code == 200
    assert requests.get(page, timeout=30).status_code == 401
    assert requests.get(page, headers=basic("bobzq", "bob-pw"), timeout=30).status_code == 403
    return s


@pytest.fixture(scope="module")
def closed(sec_servers):
    """A server that lets no address read the metrics: only root."""
    return sec_servers(args=("--metrics-allow", "none"))


def assert_json_refusal(r: requests.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json") and r.json()["message"]
    assert "devpi_" not in r.text


def test_only_root_reads_metrics_when_no_address_is_allowed(closed):
    url = f"{closed.url}/+metrics"
    r = requests.get(url, timeout=30)
    assert_json_refusal(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Basic realm="devpi"'
    bob = closed.create_user("bobzq2", "bob-pw")
    assert_json_refusal(requests.get(url, headers=basic("bobzq2", "bob-pw"), timeout=30), 403)
    assert_json_refusal(requests.get(url, headers=basic(*bob), timeout=30), 403)  # bob's login token
    assert_json_refusal(requests.get(url, headers=basic("root", "wrong"), timeout=30), 401)
    root = closed.login("root", "root")
    scoped = closed.api("POST", "/root/+token-create", json={"allowed": ["upload"]}, auth=root)
    assert scoped.status_code == 200, scoped.text
    token = scoped.json()["result"]["token"]
    assert_json_refusal(requests.get(url, headers=basic("root", token), timeout=30), 403)  # a scoped token
    r = requests.get(url, headers=basic(*root), timeout=30)
    assert r.status_code == 200 and "devpi_http_requests_total" in r.text
    assert requests.get(url, headers=basic("root", "root"), timeout=30).status_code == 200
    # path variants reach the same gate or nothing
    for path in ("/+metrics/", "/%2Bmetrics", "/+metrics?x=1", "//+metrics", "/+health/../+metrics",
                 "/+metrics%00", "/+METRICS"):
        r = requests.get(closed.url + path, timeout=30)
        assert r.status_code in (401, 404), (path, r.status_code)
        assert "devpi_" not in r.text and r.json()["message"]


def test_a_forwarded_address_is_the_client_behind_a_trusted_proxy(srv):
    """Default: loopback may read. A trusted proxy (loopback) forwarding a remote client makes
    the remote client the one asking; a loopback address the client put left of it is no key."""
    url = f"{srv.url}/+metrics"
    assert requests.get(url, timeout=30).status_code == 200
    assert_json_refusal(requests.get(url, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30), 401)
    forged = {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}
    assert_json_refusal(requests.get(url, headers=forged, timeout=30), 401)
    assert_json_refusal(requests.get(url, headers={"X-Forwarded-For": "garbage, 203.0.113.9"}, timeout=30), 401)


def test_no_user_index_or_project_name_in_metrics_or_health(srv):
    metrics = requests.get(f"{srv.url}/+metrics", timeout=30).text
    health = requests.get(f"{srv.url}/+health", timeout=30).text
    for name in (SECRET_USER, SECRET_INDEX, SECRET_PROJECT, "bobzq", "root/pypi"):
        assert name not in metrics and name not in health, name
    routes = {s.labels["route"] for f in text_string_to_metric_families(metrics) for s in f.samples
              if "route" in s.labels}
    assert "/<user>/<index>/+simple/<project>/" in routes


def test_made_up_paths_and_methods_add_no_series(srv):
    def series() -> set[tuple]:
        text = requests.get(f"{srv.url}/+metrics", timeout=30).text
        return {(s.name, tuple(sorted(s.labels.items()))) for f in text_string_to_metric_families(text)
                for s in f.samples if s.name.startswith("devpi_http_")}

    def token() -> str:
        return "zz" + "".join(random.choices(string.ascii_lowercase, k=10))

    before = series()
    tokens = []
    for i in range(150):
        t = token()
        tokens.append(t)
        path = random.choice([f"/{t}", f"/{t}/{t}", f"/{t}/{t}/+simple/{t}/", f"/{t}/{t}/+f/{t}/{t}.whl",
                              f"/+{t}", f"/{t}%ff", f"/{t}?{t}={t}", f"/{t}/+api"])
        requests.get(srv.url + path, timeout=30)
        if i % 10 == 0:
            requests.request(random.choice(["PROPFIND", "MKCOL", "TRACE", "LINK"]), f"{srv.url}/{t}", timeout=30)
    # raw request lines too: an HTTP version and a method no client library would send
    for method in (b"PURGE", b"SEARCH", b"REPORT"):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as conn:
            conn.sendall(method + b" /" + token().encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while conn.recv(65536):
                pass
    after = series()
    new = after - before
    text = requests.get(f"{srv.url}/+metrics", timeout=30).text
    assert not any(t in text for t in tokens)
    # a few (template, method, status) combinations, not one per request (> 150 requests)
    counted = [labels for name, labels in new if name == "devpi_http_requests_total"]
    assert len(counted) <= 20, sorted(counted)  # (9 here: template x method x status)
    methods = {dict(labels).get("method") for _, labels in after}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "PUSH", "OPTIONS", "other", None}
    assert "other" in methods


def test_health_and_metrics_refuse_writes_and_bodies(srv):
    for path in ("/+health", "/+metrics"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert_json_refusal(requests.request(method, srv.url + path, data=b"x" * 1000, timeout=30), 405)
        # a body announced far beyond the server's limit is refused before it is read
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 40}\r\n\r\n".encode())
            head = conn.recv(65536)
        assert head.startswith(b"HTTP/1.1 413"), head[:100]


@pytest.mark.parametrize("option, value", [
    ("--metrics-allow", "everyone"), ("--metrics-allow", "10.0.0.0/33"), ("--metrics-allow", "1.2.3.4;rm"),
    ("--metrics-allow", "::1/200"), ("--min-free-space", "-1G"), ("--min-free-space", "lots"),
])
def test_bad_option_values_stop_the_start_in_one_line(tmp_path, option, value):
    p = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "s"), "--port", "0",
                        option, value], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("devpi server: error: argument " + option)
    assert not (tmp_path / "s").exists()
