"""``--mirror-cache-size``: past the budget, the least recently used cached mirror files go
(rows and blobs) and are downloaded again when asked for; uploads never go, and a blob an
upload shares with a mirror file stays."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import requests
from mirror_helpers import installed, pip_install

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))
from ops_helpers import admin_json, backdate, blob_path, db, wait_until

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
PAD = 200_000  # random bytes per wheel: sizes the budget is made of


def _wheel(upstream, project):
    return upstream.add_wheel(project, "1.0", extra_files={f"{project.replace('-', '_')}/pad.bin": os.urandom(PAD)})


def _download(server, project: str, f) -> None:
    page_url = f"{server.url}/root/pypi/+simple/{project}/"
    page = requests.get(page_url, headers=SIMPLE_JSON, timeout=30).json()
    [entry] = [e for e in page["files"] if e["filename"] == f.filename]
    r = requests.get(requests.compat.urljoin(page_url, entry["url"]), timeout=30)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == f.sha256


def _mirror_row(server, f) -> tuple | None:
    with db(server.serverdir) as conn:
        return conn.execute("SELECT created, last_access FROM mirror_files WHERE sha256 = ?", (f.sha256,)).fetchone()


def test_eviction_keeps_the_recently_used_and_refetches_on_demand(make_server, upstream, tmp_path):
    names = [f"budget-{c}" for c in "abcde"]
    files = {n: _wheel(upstream, n) for n in names}
    size = max(f.size for f in files.values())
    budget = int(3.5 * size)
    server = make_server(mirror_url=upstream.url,
                         args=("--mirror-cache-size", str(budget), "--disk-check-interval", "0.2", "--gc-interval", "0"))
    auth = server.login("root", "root")
    server.create_index(auth, "dev", bases=[])
    a, b, c, d, e = (files[n] for n in names)
    for n in names[:3]:
        _download(server, n, files[n])
    wait_until(lambda: all(_mirror_row(server, files[n]) for n in names[:3]), what="rows of a, b, c")
    for f in (a, b, c):  # downloaded a while ago (a blob written moments ago is left to the collector)
        backdate(blob_path(server.serverdir, f.sha256), 3600)
    # c's bytes are also uploaded to a private index: never counted, never deleted
    c_copy = tmp_path / c.filename
    c_copy.write_bytes(c.content)
    assert server.upload("root/dev", c_copy, auth).status_code == 200
    _download(server, names[0], a)  # a is used again: now the most recent of a, b, c
    wait_until(lambda: _mirror_row(server, a)[1] > _mirror_row(server, a)[0], what="a's access recorded")

    for n in names[3:]:
        _download(server, n, files[n])  # a, b, d, e count: over the budget by one
    wait_until(lambda: _mirror_row(server, b) is None, what="b evicted")
    wait_until(lambda: not blob_path(server.serverdir, b.sha256).exists(), what="b's blob deleted")
    for f in (a, c, d, e):
        assert _mirror_row(server, f) is not None, f.filename
        assert blob_path(server.serverdir, f.sha256).exists(), f.filename
    status = requests.get(f"{server.url}/+status", auth=auth, timeout=30).json()["result"]["disk"]["server"]
    assert status["evictions_total"] == 1 and status["evicted_bytes_total"] == b.size
    assert status["mirror_cache_budget"] == budget
    # the same figures for a monitoring system (root may read /+metrics from anywhere)
    metrics = requests.get(f"{server.url}/+metrics", auth=auth, timeout=30).text
    assert f"devpi_mirror_evictions_total {1.0}" in metrics.splitlines(), metrics
    assert f"devpi_mirror_evicted_bytes_total {float(b.size)}" in metrics.splitlines()
    assert f"devpi_mirror_cache_budget_bytes {float(budget)}" in metrics.splitlines()
    assert any(line.startswith("devpi_blob_store_bytes ") for line in metrics.splitlines())

    before = upstream.downloads(b.filename)
    r = pip_install(f"{server.url}/root/pypi/+simple/", tmp_path / "target", names[1])
    assert r.returncode == 0, r.stderr
    assert installed(tmp_path / "target") == {names[1]: "1.0"}
    assert upstream.downloads(b.filename) == before + 1
    wait_until(lambda: blob_path(server.serverdir, b.sha256).exists(), what="b stored again")
    assert hashlib.sha256(blob_path(server.serverdir, b.sha256).read_bytes()).hexdigest() == b.sha256


def test_devpi_gc_evicts_offline_beside_the_server(make_server, upstream):
    names = [f"offline-{c}" for c in "xyz"]
    files = {n: _wheel(upstream, n) for n in names}
    server = make_server(mirror_url=upstream.url)
    for n in names:
        _download(server, n, files[n])
    wait_until(lambda: all(_mirror_row(server, files[n]) for n in names), what="rows stored")
    for f in files.values():
        backdate(blob_path(server.serverdir, f.sha256), 3600)
    x, y, z = (files[n] for n in names)
    budget = int(2.5 * max(f.size for f in files.values()))
    report = admin_json("gc", "--serverdir", str(server.serverdir), "--mirror-cache-size", str(budget))
    assert report["eviction"]["evicted"] == 1 and report["eviction"]["evicted_bytes"] == x.size
    assert not blob_path(server.serverdir, x.sha256).exists() and _mirror_row(server, x) is None
    assert _mirror_row(server, y) and _mirror_row(server, z)
    # the running server remembered x: it finds the blob gone and downloads it again
    before = upstream.downloads(x.filename)
    _download(server, names[0], x)
    assert upstream.downloads(x.filename) == before + 1
