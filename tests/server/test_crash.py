"""Crash safety: SIGKILL while uploads are in flight loses nothing acknowledged, lists nothing half-written."""
from __future__ import annotations

import hashlib
import os
import threading
import time

import requests
from srv_helpers import new_stage, unique
from support.dists import module_name, wheel_bytes

THREADS = 6
PER_THREAD = 25


def test_sigkill_during_uploads(make_server, storage_url):
    s = make_server(storage=storage_url)
    auth, index = new_stage(s, "pw")
    prefix = unique("crash")
    # distinct projects and versions, big enough (~300 KB) that some are mid-body at the kill
    jobs = [[wheel_bytes(f"{prefix}-{t}", f"1.{i}", module_body=f"DATA = {os.urandom(150_000).hex()!r}\n")
             for i in range(PER_THREAD)] for t in range(THREADS)]
    sha = {fn: hashlib.sha256(data).hexdigest() for job in jobs for fn, data in job}
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def uploader(t: int) -> None:
        session = requests.Session()
        for i, (fn, data) in enumerate(jobs[t]):
            if stop.is_set():
                return
            try:
                r = session.post(f"{s.url}/{index}/", auth=(auth[0], "pw"), files={"content": (fn, data)},
                                 data={":action": "file_upload", "name": f"{prefix}-{t}", "version": f"1.{i}",
                                       "sha256_digest": sha[fn]}, timeout=60)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with lock:
                    acked.append(fn)
            else:
                assert r.status_code >= 500, r.text  # nothing else may go wrong
                return

    threads = [threading.Thread(target=uploader, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 2 * THREADS and time.monotonic() < deadline:
        time.sleep(0.01)
    s.kill()
    stop.set()
    for t in threads:
        t.join(60)
    total = THREADS * PER_THREAD
    assert 2 * THREADS <= len(acked) < total, "the kill must land while uploads are still running"

    s.start()
    listed: dict[str, dict] = {}
    for t in range(THREADS):
        r = s.api("GET", f"/{index}/{prefix}-{t}")
        if r.status_code == 404:
            continue
        assert r.status_code == 200, r.text
        for version, data in r.json()["result"].items():
            assert data["+links"], f"version {version} listed without files"
            for link in data["+links"]:
                listed[link["href"].rsplit("/", 1)[1]] = link
    missing = set(acked) - set(listed)
    assert not missing, f"acknowledged uploads lost: {sorted(missing)}"
    for fn, link in listed.items():
        assert fn in sha  # only files we sent
        assert link["hashes"]["sha256"] == sha[fn]
        body = requests.get(link["href"], timeout=60)
        assert body.status_code == 200, fn
        assert hashlib.sha256(body.content).hexdigest() == sha[fn], f"{fn} served with wrong bytes"
    # the simple pages agree with the JSON
    for t in range(THREADS):
        r = requests.get(f"{s.url}/{index}/+simple/{prefix}-{t}/",
                         headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=30)
        names = {f["filename"] for f in r.json()["files"]} if r.status_code == 200 else set()
        assert names == {fn for fn in listed if fn.startswith(module_name(f"{prefix}-{t}") + "-")}
    # temp files of interrupted uploads were swept at start-up
    left = [p for p in (s.serverdir / "blobs" / "tmp").rglob("*") if p.is_file()
            and p.name != ".owner"  # the running process's lock on its own temp dir
            and not (p.name.startswith("spare-") and p.stat().st_size == 0)]  # made ahead, empty
    assert left == []
    # and the server takes uploads again
    fn, data = wheel_bytes(f"{prefix}-after", "1.0")
    r = requests.post(f"{s.url}/{index}/", auth=(auth[0], "pw"), files={"content": (fn, data)},
                      data={":action": "file_upload", "name": f"{prefix}-after", "version": "1.0"}, timeout=60)
    assert r.status_code == 200, r.text


def test_lost_core_metadata_blob_is_rederived(server, tmp_path):
    """The PEP 658 copy of a wheel's METADATA is written without fsync; after a crash that
    lost or truncated it, the server takes it from the wheel again."""
    s = server
    auth, index = new_stage(s, "pw")
    fn, data = wheel_bytes("meta-pkg", "1.0", summary="kept")
    r = requests.post(f"{s.url}/{index}/", auth=(auth[0], "pw"), files={"content": (fn, data)},
                      data={":action": "file_upload", "name": "meta-pkg", "version": "1.0"}, timeout=60)
    assert r.status_code == 200, r.text
    [f] = requests.get(f"{s.url}/{index}/+simple/meta-pkg/", timeout=30,
                       headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"]
    meta_sha = f["core-metadata"]["sha256"]
    url = f"{s.url}/{index}/+simple/meta-pkg/{f['url']}.metadata"
    blob = s.serverdir / "blobs" / meta_sha[:2] / meta_sha
    for damage in (lambda: blob.write_bytes(b""), blob.unlink):
        damage()
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == meta_sha
        assert b"Summary: kept" in r.content
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == meta_sha
