"""Mirrored files: verified before they are kept, never served wrong, fetched once."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from mirror_helpers import blob_appears, blob_exists, file_url, make_mirror, page, sha256


def big() -> bytes:
    """Several chunks (the client gets bytes before the hash is known), unique per call."""
    return os.urandom(600 * 1024)


def _first_page(mserver, project):
    url = f"{mserver.url}/root/pypi/+simple/{project}/"
    return url, page(url)


def _get(url: str) -> tuple[int | str, bytes]:
    """Status and body, or the exception name if the transfer broke off."""
    try:
        r = requests.get(url, timeout=60)
        return r.status_code, r.content
    except requests.RequestException as e:
        return type(e).__name__, b""


@pytest.mark.parametrize("size", ["small", "big"])
def test_wrong_upstream_hash_is_never_served_nor_stored(mserver, upstream, size):
    project = f"badhash-{size}"
    content = b"tiny but wrong" if size == "small" else big()
    f = upstream.add_file(project, f"{project}-1.0.tar.gz", content)
    upstream.wrong_hash.add(f.filename)
    url, r = _first_page(mserver, project)
    advertised = r.json()["files"][0]["hashes"]["sha256"]
    assert advertised != f.sha256
    for _ in range(2):  # the second request fetches again: nothing bad was kept
        status, body = _get(file_url(url, r, f.filename))
        assert status != 200 or len(body) < len(content)
        assert body != content
    assert upstream.downloads(f.filename) == 2
    assert not blob_exists(mserver, f.sha256) and not blob_exists(mserver, advertised)
    assert "does not match the upstream page" in mserver.log_text()


def test_truncated_upstream_file_is_never_served_nor_stored(mserver, upstream):
    f = upstream.add_file("cutoff", "cutoff-1.0.tar.gz", big())
    upstream.truncate.add(f.filename)
    url, r = _first_page(mserver, "cutoff")
    status, body = _get(file_url(url, r, f.filename))
    assert body != f.content and (status != 200 or len(body) < len(f.content))
    assert not blob_exists(mserver, f.sha256)
    # once upstream sends the whole file it is served and kept
    upstream.truncate.discard(f.filename)
    status, body = _get(file_url(url, r, f.filename))
    assert status == 200 and body == f.content
    assert blob_appears(mserver, f.sha256)


def test_concurrent_first_requests_share_one_upstream_download(mserver, upstream):
    f = upstream.add_file("popular", "popular-1.0.tar.gz", big())
    url, r = _first_page(mserver, "popular")
    target = file_url(url, r, f.filename)
    upstream.chunk_delay = 0.05  # a slow transfer, so the 20 requests overlap it
    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: _get(target), range(20)))
    finally:
        upstream.chunk_delay = 0.0
    assert all(status == 200 and body == f.content for status, body in results)
    assert upstream.downloads(f.filename) == 1
    assert blob_appears(mserver, sha256(f.content))
    # and afterwards it comes from the store, with range support
    r2 = requests.get(target, headers={"Range": "bytes=0-9"}, timeout=60)
    assert r2.status_code == 206 and r2.content == f.content[:10]
    assert upstream.downloads(f.filename) == 1


def test_a_file_kept_for_one_mirror_is_downloaded_once_more_for_another(mserver, upstream):
    """Each mirror serves only bytes its own upstream sent (issue 24, finding 9): the second
    mirror downloads the file once (however many clients ask at once), then shares the blob."""
    f = upstream.add_file("shared-bytes", "shared-bytes-1.0.tar.gz", big())
    url, r = _first_page(mserver, "shared-bytes")
    assert _get(file_url(url, r, f.filename)) == (200, f.content)
    assert blob_appears(mserver, f.sha256)
    # a second mirror of the same upstream: its path differs, the blob is the same
    other = make_mirror(mserver, mserver.login("root", "root"), "same-upstream", upstream.url)
    r2 = page(other, "shared-bytes/")
    target = file_url(other + "shared-bytes/", r2, f.filename)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _get(target), range(8)))
    assert results == [(200, f.content)] * 8
    assert requests.get(target, headers={"Range": "bytes=5-9"}, timeout=60).content == f.content[5:10]
    assert upstream.downloads(f.filename) == 2  # once per mirror


def test_concurrent_first_page_requests_share_one_upstream_fetch(mserver, upstream):
    upstream.add_wheel("crowded", "1.0")
    # a mirror index nobody asked anything yet: the very first requests race to set it up too
    simple = make_mirror(mserver, mserver.login("root", "root"), "fresh", upstream.url)
    upstream.delays["crowded"] = 0.5
    try:
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: page(simple, "crowded/").status_code, range(20)))
    finally:
        del upstream.delays["crowded"]
    assert codes == [200] * 20
    assert upstream.count("/simple/crowded/") == 1


def test_core_metadata_and_hashless_links(mserver, upstream):
    f = upstream.add_wheel("meta-pkg", "1.0", requires_python=">=3.9", yanked="oops")
    url, r = _first_page(mserver, "meta-pkg")
    entry = r.json()["files"][0]
    assert entry["yanked"] == "oops" and entry["requires-python"] == ">=3.9"
    assert entry["core-metadata"] == {"sha256": f.metadata_sha256}
    assert entry["size"] == f.size and "upload-time" in entry
    status, body = _get(file_url(url, r, f.filename) + ".metadata")
    assert status == 200 and body == f.core_metadata
    # HTML-only upstream: hashes come from the #sha256 fragments
    from support.upstream import Upstream

    with Upstream(serve_json=False) as plain:
        g = plain.add_file("nohash", "nohash-1.0.tar.gz", b"sdist bytes")
        plain.wrong_hash.clear()
        simple = make_mirror(mserver, mserver.login("root", "root"), "plain", plain.url)
        r = page(simple, "nohash/")
        entry = r.json()["files"][0]
        assert entry["hashes"]["sha256"] == g.sha256  # taken from the HTML #sha256 fragment
        assert entry["url"].startswith("../../../../root/plain/+f/")


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_core_metadata_without_a_hash_is_still_offered(mserver, upstream, fmt):
    """An upstream may say only that a file has core metadata (PEP 714 ``true``, or
    data-core-metadata="true"): our page says so too, and the .metadata comes through."""
    f = upstream.add_wheel(f"hashless-meta-{fmt}", "1.0")
    upstream.metadata_hashless.add(f.filename)
    upstream.serve_json = fmt == "json"  # what the mirror reads the flag from
    try:
        url, r = _first_page(mserver, f"hashless-meta-{fmt}")
    finally:
        upstream.serve_json = True
    entry = r.json()["files"][0]
    assert entry["core-metadata"] is True and entry["dist-info-metadata"] is True
    html = requests.get(url, headers={"Accept": "text/html"}, timeout=60).text
    assert 'data-core-metadata="true"' in html and 'data-dist-info-metadata="true"' in html
    status, body = _get(file_url(url, r, f.filename) + ".metadata")
    assert status == 200 and body == f.core_metadata


def test_byte_ranges_of_a_file_not_yet_cached(mserver, upstream):
    """Installers (uv) read a wheel's metadata with HEAD and byte ranges before they download
    it: a file nobody fetched yet answers them like a cached one, from the verified whole."""
    f = upstream.add_file("ranged", "ranged-1.0.tar.gz", big())
    url, r = _first_page(mserver, "ranged")
    target = file_url(url, r, f.filename)
    head = requests.head(target, timeout=60)
    assert head.status_code == 200 and head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["Content-Length"] == str(len(f.content))
    tail = requests.get(target, headers={"Range": "bytes=-100"}, timeout=60)
    assert tail.status_code == 206 and tail.content == f.content[-100:]
    assert tail.headers["Content-Range"] == f"bytes {len(f.content) - 100}-{len(f.content) - 1}/{len(f.content)}"
    middle = requests.get(target, headers={"Range": "bytes=1000-1999"}, timeout=60)
    assert middle.status_code == 206 and middle.content == f.content[1000:2000]
    assert requests.get(target, timeout=60).content == f.content
    assert upstream.downloads(f.filename) == 1  # the HEAD started the one download
    assert blob_appears(mserver, f.sha256)


def test_byte_range_of_a_wrong_upstream_file_is_an_error(mserver, upstream):
    f = upstream.add_file("rangebad", "rangebad-1.0.tar.gz", big())
    upstream.wrong_hash.add(f.filename)
    url, r = _first_page(mserver, "rangebad")
    resp = requests.get(file_url(url, r, f.filename), headers={"Range": "bytes=0-99"}, timeout=60)
    assert resp.status_code == 502
    assert "does not match the upstream page" in resp.json()["message"]
    assert not blob_exists(mserver, f.sha256)


def test_first_client_leaving_early_does_not_stop_the_download(mserver, upstream):
    """The request that starts a download drives it; if its client hangs up halfway, the
    transfer still ends verified and stored, and clients who joined meanwhile get it all."""
    f = upstream.add_file("leaver", "leaver-1.0.tar.gz", big())
    url, r = _first_page(mserver, "leaver")
    target = file_url(url, r, f.filename)
    upstream.chunk_delay = 0.05
    try:
        first = requests.get(target, stream=True, timeout=60)
        assert first.status_code == 200
        assert len(next(first.iter_content(1024))) > 0
        with ThreadPoolExecutor(1) as pool:
            joined = pool.submit(_get, target)
            first.close()  # hang up mid-transfer
            assert joined.result() == (200, f.content)
    finally:
        upstream.chunk_delay = 0.0
    assert blob_appears(mserver, f.sha256)
    assert _get(target) == (200, f.content)
    assert upstream.downloads(f.filename) == 1
