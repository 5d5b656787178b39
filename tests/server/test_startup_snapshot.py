"""A restart answers the simple pages its last run kept (repos/page_snapshot.py) before the
application is assembled, byte for byte as the application would, and never once the
database has moved on: not after a commit, not after a kill -9, not for a private index.

The servers here load tests/support/startup_gate.py, a plugin whose configure hook holds the
assembly until a gate file exists: with the gate closed, whatever answers comes from the
start-up lane (http/startup_lane.py), and whatever waits is waiting for the application.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests
from devpi.server.repos import page_snapshot
from devpi.server.repos.simple_page_cache import CachedPage
from devpi.server.store.serial_peek import SerialPeek
from srv_helpers import new_stage, serial, unique
from support.dists import write_wheel
from support.server import ServerProcess
from support.startup import HTML, JSON, SAME_HEADERS, Gate, GatedStart, first_answer, pending, snapshot_head


def wait_for_snapshot(s: ServerProcess, *keys: list[str]) -> dict:
    """The snapshot once the running server has written it with ``keys`` at its current serial."""
    deadline = time.monotonic() + 30
    while True:
        head = snapshot_head(s)
        if head and head["serial"] == serial(s) and all(k in [p[0] for p in head["pages"]] for k in keys):
            return head
        assert time.monotonic() < deadline, f"no snapshot with {keys}: {head}"
        time.sleep(0.1)


def stage_with_release(s: ServerProcess, tmp_path: Path, project: str) -> tuple[tuple[str, str], str]:
    auth, index = new_stage(s, "pw", bases=[])
    r = s.upload(index, write_wheel(tmp_path, project, "1.0"), (auth[0], "pw"))
    assert r.status_code == 200, r.text
    return auth, index


def test_a_restart_answers_kept_pages_before_its_application_is_ready(make_server, tmp_path):
    gate = Gate(tmp_path / "gate")
    s = make_server(env=gate.env)
    project = unique("kept")
    auth, index = stage_with_release(s, tmp_path, project)
    asked = [(f"/{index}/+simple/", accept) for accept in (HTML, JSON)]
    asked += [(f"/{index}/+simple/{project}/", accept) for accept in (HTML, JSON)]
    before = {}
    for path, accept in asked:
        before[path, accept] = r = requests.get(s.url + path, headers={"Accept": accept}, timeout=30)
        assert r.status_code == 200, r.text
    assert s.stop() == 0  # a clean stop writes the snapshot
    assert len(snapshot_head(s)["pages"]) == 4

    start = GatedStart(s, gate)
    try:
        for (path, accept), want in before.items():
            got = first_answer(s.url + path, headers={"Accept": accept})
            assert got.status_code == 200, got.text
            assert got.content == want.content
            assert {h: got.headers.get(h) for h in SAME_HEADERS} == {h: want.headers.get(h) for h in SAME_HEADERS}
        etag = before[asked[0]].headers["ETag"]
        r = requests.get(s.url + asked[0][0], headers={"If-None-Match": etag}, timeout=30)
        assert r.status_code == 304
        # anything else waits for the application (so all of the above came from the start-up
        # lane): another URL, a page not kept, any credentials
        assert pending(s.url + "/+api")
        assert pending(s.url + f"/{index}/+simple/other/")
        assert pending(s.url + asked[0][0], auth=(auth[0], "wrong"))
    finally:
        start.finish()
    assert "answering 4 simple pages of serial" in s.log_text()
    # handed to the application's page cache (nothing rendered them since): kept for the next start
    assert s.stop() == 0
    assert sorted(p[1] for p in snapshot_head(s)["pages"]) == sorted(r.headers["ETag"] for r in before.values())
    s.start()
    for (path, accept), want in before.items():  # and from the application, the same
        assert requests.get(s.url + path, headers={"Accept": accept}, timeout=30).content == want.content


def test_a_kill_keeps_the_snapshot_and_a_change_before_it_retires_it(make_server, tmp_path):
    gate = Gate(tmp_path / "gate")
    s = make_server(env=gate.env)
    project = unique("killed")
    auth, index = stage_with_release(s, tmp_path, project)
    page = f"/{index}/+simple/{project}/"
    want = requests.get(s.url + page, timeout=30)
    assert want.status_code == 200 and "1.0" in want.text
    wait_for_snapshot(s, [auth[0], "dev", project, "html", "../../../../"])

    s.kill()  # no change since the snapshot: it still answers
    start = GatedStart(s, gate)
    try:
        got = first_answer(s.url + page)
        assert (got.status_code, got.content) == (200, want.content)
        assert pending(s.url + "/+api")  # the application is not ready: that came from the snapshot
    finally:
        start.finish()

    r = s.upload(index, write_wheel(tmp_path, project, "2.0"), (auth[0], "pw"))  # a commit ...
    assert r.status_code == 200, r.text
    s.kill()  # ... and a crash before (or after) the snapshot was written again
    start = GatedStart(s, gate)
    try:
        assert pending(s.url + page)  # never the kept page of the serial before
    finally:
        start.finish()
    r = requests.get(s.url + page, timeout=30)
    assert r.status_code == 200 and "2.0" in r.text and "1.0" in r.text


def test_only_public_pages_of_plain_stages_are_kept(make_server, tmp_path):
    gate = Gate(tmp_path / "gate")
    s = make_server(env=gate.env)
    project = unique("which")
    auth, public = stage_with_release(s, tmp_path, project)
    s.create_index(auth, "private", bases=[], acl_read=[auth[0]])
    s.create_index(auth, "listed", bases=[], acl_read=[":AUTHENTICATED:", ":ANONYMOUS:"])
    s.create_index(auth, "mirrored", bases=["root/pypi"])
    for name in ("private", "listed", "mirrored"):
        r = s.upload(f"{auth[0]}/{name}", write_wheel(tmp_path, project, "1.0"), (auth[0], "pw"))
        assert r.status_code == 200, r.text
    for name in ("dev", "private", "listed", "mirrored"):
        for path in (f"/{auth[0]}/{name}/+simple/", f"/{auth[0]}/{name}/+simple/{project}/"):
            r = requests.get(s.url + path, auth=(auth[0], "pw"), timeout=30)
            assert r.status_code == 200, r.text
    assert s.stop() == 0
    kept = {tuple(p[0][:2]) for p in snapshot_head(s)["pages"]}
    assert kept == {(auth[0], "dev"), (auth[0], "listed")}

    start = GatedStart(s, gate)
    try:
        assert first_answer(s.url + f"/{auth[0]}/dev/+simple/").status_code == 200
        assert pending(s.url + f"/{auth[0]}/private/+simple/")
        assert pending(s.url + f"/{auth[0]}/mirrored/+simple/{project}/")
    finally:
        start.finish()


def test_snapshots_are_kept_on_sqlite_only_and_restarts_answer_alike(any_server, tmp_path):
    s = any_server
    project = unique("engines")
    auth, index = stage_with_release(s, tmp_path, project)
    want = requests.get(f"{s.url}/{index}/+simple/{project}/", timeout=30)
    assert want.status_code == 200
    assert s.stop() == 0
    assert (snapshot_head(s) is not None) == (s.storage is None)  # None: the embedded SQLite
    s.start()
    assert requests.get(f"{s.url}/{index}/+simple/{project}/", timeout=30).content == want.content


def test_the_snapshot_file_is_read_only_when_whole_and_from_this_server(tmp_path):
    path = tmp_path / page_snapshot.FILE_NAME
    pages = [(("alice", "dev", "", "html", ""), CachedPage(b"<html>list</html>", '"e1"', {}, None)),
             (("alice", "dev", "p", "json", "../../../"),
              CachedPage(b'{"name":"p"}', '"e2"', {"X-PyPI-Last-Serial": "3"}, None))]
    assert page_snapshot.dump(path, serial=7, uuid="u1", fingerprint="devpi server 1", headers={"X-Devpi-Serial": "7"},
                              pages=pages) == 2
    snap = page_snapshot.load(path, "devpi server 1")
    assert (snap.serial, snap.uuid, snap.open_root) == (7, "u1", True)  # unless told otherwise
    page = snap.get(("alice", "dev", "p", "json", "../../../"))
    assert (page.body, page.etag, page.extra) == (b'{"name":"p"}', '"e2"', {"X-PyPI-Last-Serial": "3"})
    assert snap.headers == [("X-Devpi-Serial", "7")]
    assert page_snapshot.load(path, "devpi server 2") is None  # another version or other plugins
    data = path.read_bytes()
    for broken in (data[:-1], data + b"x", data.replace(b"list", b"lost"), b"", data[:40], b"garbage\n" + data):
        path.write_bytes(broken)
        assert page_snapshot.load(path, "devpi server 1") is None
    path.unlink()
    assert page_snapshot.load(path, "devpi server 1") is None
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_the_serial_peek_reads_what_the_storage_has(server):
    s = server
    peek = SerialPeek(s.serverdir / "devpi.sqlite")
    status = s.api("GET", "/+status").json()["result"]
    assert peek.read() == (status["serial"], status["uuid"])
    new_stage(s)
    assert peek.read() == (serial(s), status["uuid"])
    peek.close()
    assert peek.read() is None
    missing = SerialPeek(s.serverdir / "nothing.sqlite")
    assert missing.read() is None
    assert not (s.serverdir / "nothing.sqlite").exists()  # never created


def test_the_snapshot_is_bounded(tmp_path):
    body = b"x" * (page_snapshot.MAX_BODY_BYTES // 3)
    pages = [(("a", "b", f"p{i}", "html", "../../../"), CachedPage(body, f'"{i}"', {}, None))
             for i in range(10)]
    kept = page_snapshot.dump(tmp_path / "s", serial=1, uuid="u", fingerprint="f", headers={}, pages=pages)
    assert kept == 3
    assert (tmp_path / "s").stat().st_size < page_snapshot.MAX_BODY_BYTES + page_snapshot.MAX_HEAD_BYTES


def test_an_open_root_is_refused_on_a_wide_address_before_any_snapshot_answer(make_server, tmp_path):
    s = make_server(root_password="")
    project = unique("open")
    auth, index = stage_with_release(s, tmp_path, project)
    assert requests.get(f"{s.url}/{index}/+simple/", timeout=30).status_code == 200
    assert s.stop() == 0
    head = snapshot_head(s)
    assert head["open_root"] is True and len(head["pages"]) == 1
    wide = subprocess.run([*s.command(), "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                          timeout=60)
    assert wide.returncode != 0
    assert "root has an empty password; refusing to listen on 0.0.0.0" in wide.stderr
    assert "listening" not in wide.stdout and "Traceback" not in wide.stderr
    s.start()  # on loopback it may, and then root gets a password: the next snapshot says so
    assert s.api("PATCH", "/root", json={"password": "set"}, auth=s.login("root", "")).status_code == 200
    assert requests.get(f"{s.url}/{index}/+simple/", timeout=30).status_code == 200
    assert s.stop() == 0
    assert snapshot_head(s)["open_root"] is False
