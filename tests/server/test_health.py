"""GET /+health: 200 "ready" while storage answers and disk space is above the bound, 503 with
the reason otherwise; upstream trouble is reported, never a failure."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import requests
from support import pg


def health(s, method: str = "GET") -> requests.Response:
    return requests.request(method, f"{s.url}/+health", timeout=30)


def test_ready_on_both_storage_engines(any_server):
    r = health(any_server)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "ready" and "message" not in doc
    assert doc["serial"] == any_server.api("GET", "/+status").json()["result"]["serial"]
    assert doc["disk"]["free"] > doc["disk"]["min_free"] == 1 << 30
    assert r.headers["Cache-Control"] == "no-store"
    assert health(any_server, "HEAD").status_code == 200


def test_low_disk_space_is_unready_with_the_reason(make_server):
    s = make_server(args=("--min-free-space", "1000000G"))  # more than any disk here has
    r = health(s)
    assert r.status_code == 503
    doc = r.json()
    assert doc["status"] == "unready" and "disk space low" in doc["message"], doc
    assert doc["disk"]["min_free"] == 1000000 << 30
    assert r.headers["Retry-After"] == "5"
    assert health(s, "HEAD").status_code == 503
    # the server itself still answers everything else
    assert s.api("GET", "/+api").status_code == 200


def test_unreachable_storage_is_unready_and_ready_again_when_it_is_back(make_server, request):
    """A PostgreSQL of its own, stopped under the running server, then started again."""
    request.getfixturevalue("pg_cluster")  # (skips as every PostgreSQL test does: none here, or --no-postgresql)
    # not under pytest's tmp dir: that is private to root, and the cluster may run as `postgres`
    basedir = Path(tempfile.mkdtemp(prefix="devpi-pg-health-"))
    cluster = pg.PostgresCluster(basedir).start()
    try:
        s = make_server(storage=cluster.new_database())
        assert health(s).status_code == 200
        cluster.stop()
        r = health(s)
        assert r.status_code == 503, r.text
        assert r.json()["message"].startswith("storage unreachable"), r.json()
        assert s.api("GET", "/+api").status_code == 200  # (answered from memory meanwhile)
        opts = f"-p {cluster.port} -k {cluster.basedir} -c listen_addresses=127.0.0.1 -c fsync=off"
        cluster._run(str(cluster.bin / "pg_ctl"), "-D", str(cluster.datadir), "-o", opts, "-l",
                     str(cluster.basedir / "pg.log"), "-w", "start")
        r = health(s)
        assert r.status_code == 200, r.text
    finally:
        cluster.stop()
        shutil.rmtree(basedir, ignore_errors=True)


def test_unreachable_upstream_is_information_not_a_failure(server):
    # root/pypi's upstream is a port nothing listens on: asking it a page finds that out
    requests.get(f"{server.url}/root/pypi/+simple/anything/", timeout=30)
    r = health(server)
    assert r.status_code == 200, r.text
    assert r.json()["upstream"] == {"ok": 0, "slow": 0, "down": 1}
    assert "root/pypi" not in r.text  # counts, never names
