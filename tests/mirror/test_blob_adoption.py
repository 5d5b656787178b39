"""A mirror file whose row is missing is fetched from upstream again, even when the store
already holds bytes under the page's sha256; they are then stored once.

Two ways to get there: the row was undone by a power loss (cache writes do not wait for the
disk, see ``Storage.cache_write``; the blob itself was fsynced before it), or another index
already keeps the same bytes. Up to issue 24 both were "adopted" from the store without
asking upstream; but a blob held for another index may be someone's deleted or private
upload, and a page naming its hash must not make a mirror serve it (finding 9, see
tests/security/test_sec_mirror_files.py). A mirror serves only bytes its own upstream sent,
recorded in its own row: the row is the proof of where the bytes came from, so without it
the file is downloaded and verified again, and lands on the same blob.
"""
from __future__ import annotations

import sqlite3

import requests
from mirror_helpers import blob_appears, file_url, make_mirror, page, sha256, stored_rows, wait_for_rows


def _fetch(url: str) -> bytes:
    r = requests.get(url, timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def test_a_file_whose_row_was_lost_is_fetched_and_verified_again(make_server, upstream):
    f = upstream.add_file("adopted", "adopted-1.0.tar.gz", b"the same bytes, kept once" * 4000)
    server = make_server(mirror_url=upstream.url)
    simple = f"{server.url}/root/pypi/+simple/adopted/"
    target = file_url(simple, page(simple), f.filename)
    assert _fetch(target) == f.content
    assert blob_appears(server, f.sha256)
    wait_for_rows(server, "mirror_files", 1, f.filename)
    server.stop()

    # What a power loss may do to a cache write: the row is gone, the fsynced blob is not.
    with sqlite3.connect(server.serverdir / "devpi.sqlite") as db:
        db.execute("DELETE FROM mirror_files WHERE filename = ?", (f.filename,))
    assert stored_rows(server, "mirror_files", f.filename) == 0

    server.start()
    upstream.reset_log()
    assert _fetch(target) == f.content
    assert upstream.downloads(f.filename) == 1  # asked of upstream again: the row was the proof
    wait_for_rows(server, "mirror_files", 1, f.filename)  # and recorded again
    assert _blob_count(server, f.sha256) == 1  # the same blob, kept once
    assert "mirror: could not store" not in server.log_text()


def test_a_file_another_mirror_keeps_is_downloaded_for_this_one_and_stored_once(mserver, root, upstream):
    f = upstream.add_file("shared-bytes", "shared_bytes-1.0.tar.gz", b"one blob for two mirrors" * 4000)
    first = f"{mserver.url}/root/pypi/+simple/shared-bytes/"
    assert _fetch(file_url(first, page(first), f.filename)) == f.content
    assert blob_appears(mserver, f.sha256)

    second = make_mirror(mserver, root, "adoption-second", upstream.url) + "shared-bytes/"
    upstream.reset_log()
    body = _fetch(file_url(second, page(second), f.filename))
    assert sha256(body) == f.sha256
    assert upstream.downloads(f.filename) == 1  # this mirror's own upstream vouches for its bytes
    wait_for_rows(mserver, "mirror_files", 2, f.filename)  # each index records its own row for the one blob
    assert _blob_count(mserver, f.sha256) == 1


def _blob_count(server, sha: str) -> int:
    return sum(1 for p in (server.serverdir / "blobs").rglob(sha) if p.is_file())
