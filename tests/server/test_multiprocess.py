"""Several server processes on one PostgreSQL database and one blob directory."""
import hashlib
import os
import threading
import time

import pytest
import requests
from support.dists import write_wheel
from support.waiting import wait_until


@pytest.fixture
def two_servers(make_server, pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    shared = tmp_path / "shared-serverdir"
    a = make_server(serverdir=shared, storage=url)
    b = make_server(serverdir=shared, storage=url)
    return a, b




def test_upload_on_one_process_is_served_by_the_other(two_servers, tmp_path):
    a, b = two_servers
    assert a.api("GET", "/+status").json()["result"]["uuid"] == b.api("GET", "/+status").json()["result"]["uuid"]
    alice = a.create_user("alice", "pw")
    a.create_index(alice, "dev")
    # b answers 404 for the page first, then picks up a's commits through the changelog.
    assert b.api("GET", "/alice/dev/+simple/pkg/").status_code == 404
    wheel = write_wheel(tmp_path, "pkg", "1.0")
    assert a.upload("alice/dev", wheel, ("alice", "pw")).status_code == 200

    def page_on_b():
        r = b.api("GET", "/alice/dev/+simple/pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        return r.json() if r.status_code == 200 else None

    page = wait_until(page_on_b)
    (entry,) = page["files"]
    data = requests.get(f"{b.url}/alice/dev/+simple/pkg/{entry['url']}", timeout=10).content
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_concurrent_writers_get_consecutive_serials(two_servers, tmp_path):
    a, b = two_servers
    alice = a.create_user("alice", "pw")
    a.create_index(alice, "dev")
    start = a.api("GET", "/+status").json()["result"]["serial"]
    errors = []

    def upload(server, name):
        for v in range(5):
            wheel = write_wheel(tmp_path, name, f"1.{v}")
            r = server.upload("alice/dev", wheel, ("alice", "pw"))
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=upload, args=(s, n)) for s, n in ((a, "left"), (b, "right"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    end = wait_until(lambda: max(s.api("GET", "/+status").json()["result"]["serial"] for s in (a, b)))
    assert end == start + 10
    for serial in range(start + 1, end + 1):
        r = a.api("GET", f"/+changelog/{serial}")
        assert r.status_code == 200, (serial, r.text)
        assert any(c["kind"] == "file" for c in r.json()["result"]["changes"])


def test_mirror_page_stored_by_one_process_is_served_by_the_other_when_upstream_is_down(
        make_server, pg_cluster, tmp_path):
    """Each process remembers which mirror pages it stored (to skip SQL for a name seen the
    first time); a page another process stored must still stand in when upstream is down."""
    from support.upstream import Upstream

    with Upstream() as up:
        up.add_wheel("shared-pkg", "1.0")
        url = pg_cluster.new_database()
        shared = tmp_path / "shared-serverdir"
        a = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        b = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        assert b.api("GET", "/root/pypi/+simple/unrelated/").status_code == 404  # b has read its names
        r = requests.get(f"{a.url}/root/pypi/+simple/shared-pkg/", timeout=30)
        assert r.status_code == 200 and "shared_pkg-1.0" in r.text
        a.stop()  # a clean stop commits a's cached page
        up.stop()
        r = requests.get(f"{b.url}/root/pypi/+simple/shared-pkg/", timeout=30)
        assert r.status_code == 200, r.text
        assert "shared_pkg-1.0" in r.text


def test_a_starting_process_leaves_the_temp_files_of_a_running_one_alone(make_server, pg_cluster, tmp_path):
    """Each process clears at start what dead processes left in blobs/tmp; a download that
    a running process is writing there must still land as a blob."""
    from support.upstream import Upstream

    with Upstream() as up:
        f = up.add_wheel("slow-pkg", "1.0", extra_files={"slow_pkg/data.bin": os.urandom(600_000)})
        url = pg_cluster.new_database()
        shared = tmp_path / "shared-serverdir"
        a = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        page = requests.get(f"{a.url}/root/pypi/+simple/slow-pkg/", timeout=30,
                            headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
        [link] = page["files"]
        up.chunk_delay = 0.3  # the download takes seconds
        got: dict = {}
        fetch = threading.Thread(target=lambda: got.update(
            r=requests.get(f"{a.url}/root/pypi/+simple/slow-pkg/{link['url']}", timeout=60)))
        fetch.start()
        tmp = shared / "blobs" / "tmp"
        wait_until(lambda: [p for p in tmp.rglob("*") if p.is_file() and p.stat().st_size > 0])  # under way
        make_server(serverdir=shared, storage=url, mirror_url=up.url)  # starts while a writes
        up.chunk_delay = 0.0
        fetch.join(60)
        assert got["r"].status_code == 200
        assert hashlib.sha256(got["r"].content).hexdigest() == f.sha256
        blob = shared / "blobs" / f.sha256[:2] / f.sha256
        wait_until(blob.exists)


def test_two_processes_caching_the_same_mirror_rows_both_land_them(make_server, pg_cluster, tmp_path):
    """Cache rows are upserts, committed in batches by each process: two processes storing
    the same page and file (and refreshing the page with a conditional request) neither
    fail nor lose a row; a third process serves both from the database with upstream gone."""
    from support.upstream import Upstream

    with Upstream() as up:
        f = up.add_wheel("both-pkg", "1.0")
        url = pg_cluster.new_database()
        shared = tmp_path / "shared-serverdir"
        a = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        b = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        root = a.login("root", "root")
        a.create_index(root, "quick", type="mirror", mirror_url=up.url, mirror_cache_expiry=0)
        json_accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
        for _ in range(3):  # expiry 0: the second and third ask upstream again (304: the row is touched)
            for s in (a, b):
                r = requests.get(f"{s.url}/root/quick/+simple/both-pkg/", headers=json_accept, timeout=30)
                assert r.status_code == 200
                [link] = r.json()["files"]
                data = requests.get(f"{s.url}/root/quick/+simple/both-pkg/{link['url']}", timeout=30).content
                assert hashlib.sha256(data).hexdigest() == f.sha256
        assert up.count(lambda rec: rec.header("If-None-Match") is not None) >= 2
        a.stop()
        b.stop()
        for s in (a, b):
            assert "could not store" not in s.log_text()
        up.stop()
        c = make_server(serverdir=shared, storage=url, mirror_url=up.url)
        r = requests.get(f"{c.url}/root/quick/+simple/both-pkg/", headers=json_accept, timeout=30)
        assert r.status_code == 200, r.text
        [link] = r.json()["files"]
        data = requests.get(f"{c.url}/root/quick/+simple/both-pkg/{link['url']}", timeout=30).content
        assert hashlib.sha256(data).hexdigest() == f.sha256


def test_mirror_cache_writes_do_not_wait_for_the_serial_lock(make_server, pg_cluster, tmp_path):
    """The mirror's cache is upstream's data, not a change made here: its writes take no
    serial, so on PostgreSQL they must not queue behind a transaction holding the serial
    lock (an upload in another process, say). The cached page lands while the lock is held,
    and an upload that waited for the lock lands once it is released."""
    import psycopg
    from support.upstream import Upstream

    with Upstream() as up:
        up.add_wheel("unlocked-pkg", "1.0")
        url = pg_cluster.new_database()
        server = make_server(serverdir=tmp_path / "srv", storage=url, mirror_url=up.url)
        alice = server.create_user("alice", "pw")
        server.create_index(alice, "dev")
        cached = "SELECT count(*) FROM mirror_pages WHERE project = 'unlocked-pkg'"
        upload: dict = {}
        with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as reader:
            holder.execute("SELECT value FROM kv WHERE key = 'serial' FOR UPDATE")  # held until rollback
            r = requests.get(f"{server.url}/root/pypi/+simple/unlocked-pkg/", timeout=30)
            assert r.status_code == 200 and "unlocked_pkg-1.0" in r.text
            wait_until(lambda: reader.execute(cached).fetchone()[0] == 1)
            wheel = write_wheel(tmp_path, "serialised", "1.0")
            t = threading.Thread(target=lambda: upload.update(r=server.upload("alice/dev", wheel, alice)))
            t.start()
            time.sleep(1.0)
            assert "r" not in upload  # a serial-taking write does wait for the lock
            holder.rollback()
        t.join(30)
        assert upload["r"].status_code == 200, upload["r"].text
