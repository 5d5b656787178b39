"""Upstream answers no real index gives: links that are no URLs or no file names, dates out
of range, pages that never end, md5-only hashes, names that are no project names, and a
304 nobody asked for. None may cost a 500, a hang, or a wrong byte served."""
from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid
import zlib

import requests
from mirror_helpers import file_url, filenames, make_mirror, page, sha256

JSON_PAGE = {"Content-Type": "application/vnd.pypi.simple.v1+json"}
HTML_PAGE = {"Content-Type": "text/html"}


def _json_page(name: str, files: list[dict]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": name, "files": files}).encode()


def _mirror(mserver, root, base: str, **config) -> str:
    return make_mirror(mserver, root, f"h{uuid.uuid4().hex[:8]}", f"{base}/simple/", **config)


def test_links_that_are_no_urls_or_no_file_names_are_left_out(mserver, root, hostile):
    base, routes, _ = hostile
    good = b"good bytes"
    ok = {"filename": "lk-1.0.tar.gz", "url": "/files/lk-1.0.tar.gz", "hashes": {"sha256": sha256(good)}}
    routes["/files/lk-1.0.tar.gz"] = (200, {}, good)
    routes["/simple/lk/"] = (200, JSON_PAGE, _json_page("lk", [
        ok,
        {"filename": "lk-2.0.tar.gz", "url": "http://[bad/lk-2.0.tar.gz", "hashes": {}},
        {"filename": "../../../../root/dev/lk-3.0-py3-none-any.whl", "url": "/files/x.whl",
         "hashes": {"sha256": sha256(good)}},
        {"filename": "a/lk-4.0-py3-none-any.whl", "url": "/files/y.whl", "hashes": {}},
        {"filename": ".lk-5.0.tar.gz", "url": "/files/z.tar.gz", "hashes": {}}]))
    routes["/simple/lkh/"] = (200, HTML_PAGE, (
        b'<html><head><base href="http://[bad/"></head><body>'
        b'<a href="/files/lkh-1.0.tar.gz">lkh-1.0.tar.gz</a>'
        b'<a href="http://[bad/lkh-2.0.tar.gz">lkh-2.0.tar.gz</a>'
        b'<a href="/files/a%2Flkh-3.0.tar.gz">lkh-3.0.tar.gz</a>'
        b'<a href="/files/%2e%2e">lkh-4.0.tar.gz</a></body></html>'))
    simple = _mirror(mserver, root, base)
    r = page(simple, "lk/")
    assert filenames(r) == ["lk-1.0.tar.gz"]
    assert requests.get(file_url(simple + "lk/", r, "lk-1.0.tar.gz"), timeout=30).content == good
    r = page(simple, "lkh/")
    assert filenames(r) == ["lkh-1.0.tar.gz"]
    html = requests.get(simple + "lk/", timeout=30)
    assert html.status_code == 200 and "root/dev" not in html.text and "lk-4.0" not in html.text


def test_an_upload_time_out_of_range_is_dropped(mserver, root, hostile):
    base, routes, _ = hostile
    routes["/simple/ut/"] = (200, JSON_PAGE, _json_page("ut", [
        {"filename": f"ut-{n}.0.tar.gz", "url": f"/files/ut-{n}.0.tar.gz", "hashes": {}, "upload-time": when}
        for n, when in enumerate(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                  "2024-01-02T03:04:05Z"])]))
    simple = _mirror(mserver, root, base)
    for _ in range(2):  # the first answer and the one rendered from the stored page
        r = page(simple, "ut/")
        assert r.status_code == 200, r.text
        times = {f["filename"]: f.get("upload-time") for f in r.json()["files"]}
        assert times == {"ut-0.0.tar.gz": None, "ut-1.0.tar.gz": None,
                         "ut-2.0.tar.gz": "2024-01-02T03:04:05.000000Z"}


def test_a_page_that_never_ends_gets_a_502_and_others_are_served(mserver, root, hostile, upstream):
    base, routes, _ = hostile
    routes["/simple/endless/"] = (200, HTML_PAGE, itertools.repeat(b"<a href='x'>x</a>" * 4096))
    routes["/simple/fine/"] = (200, HTML_PAGE, b"<a href='/files/fine-1.0.tar.gz'>fine-1.0.tar.gz</a>")
    simple = _mirror(mserver, root, base)
    t0 = time.monotonic()
    r = page(simple, "endless/")
    assert r.status_code == 502 and "more than" in r.json()["message"], r.text
    assert time.monotonic() - t0 < 30
    assert filenames(page(simple, "fine/")) == ["fine-1.0.tar.gz"]


def test_a_gzip_bomb_page_gets_a_502_and_the_server_stays_small(mserver, root, hostile):
    base, routes, _ = hostile
    co = zlib.compressobj(9, zlib.DEFLATED, 31)  # ~1 KiB per MiB of zeros (see gzip_bomb)
    zeros = bytes(1 << 20)
    head = co.compress(b"<html>" + zeros) + co.flush(zlib.Z_FULL_FLUSH)
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    routes["/simple/bomb/"] = (200, {**HTML_PAGE, "Content-Encoding": "gzip"}, head + block * 1023 + co.flush())
    simple = _mirror(mserver, root, base)
    r = page(simple, "bomb/")
    assert r.status_code == 502 and "more than" in r.json()["message"], r.text
    status = open(f"/proc/{mserver.proc.pid}/status").read()
    peak_kib = int(status.split("VmHWM:")[1].split()[0])
    # decoding whole reads held ~260 MiB at once here (peak 320 MiB); bounded pieces ~140 MiB
    assert peak_kib < 240 << 10, f"server peaked at {peak_kib >> 10} MiB for a 64 MiB-limited page"


def test_a_file_with_only_an_md5_is_checked_against_it(mserver, root, hostile):
    base, routes, _ = hostile
    good, bad = b"the bytes the page names", b"other bytes entirely"
    md5 = hashlib.md5(good).hexdigest()
    routes["/files/md-1.0.tar.gz"] = (200, {}, good)
    routes["/files/md-2.0.tar.gz"] = (200, {}, bad)
    routes["/simple/md/"] = (200, HTML_PAGE, (
        f'<a href="/files/md-1.0.tar.gz#md5={md5}">md-1.0.tar.gz</a>'
        f'<a href="/files/md-2.0.tar.gz#md5={md5}">md-2.0.tar.gz</a>').encode())
    routes["/simple/mdj/"] = (200, JSON_PAGE, _json_page("mdj", [
        {"filename": "mdj-2.0.tar.gz", "url": "/files/md-2.0.tar.gz", "hashes": {"md5": md5}}]))
    simple = _mirror(mserver, root, base)
    r = page(simple, "md/")
    assert requests.get(file_url(simple + "md/", r, "md-1.0.tar.gz"), timeout=30).content == good
    for project, filename in (("md/", "md-2.0.tar.gz"), ("mdj/", "mdj-2.0.tar.gz")):
        r = page(simple, project)
        for _ in range(2):  # refused, and not kept: the second request is refused again
            got = requests.get(file_url(simple + project, r, filename), timeout=30)
            assert got.status_code == 502 and "md5" in got.json()["message"], got.text
    assert not (mserver.serverdir / "blobs" / sha256(bad)[:2] / sha256(bad)).exists()


def test_names_that_are_no_project_names_never_reach_upstream(mserver, root, hostile):
    base, routes, asked = hostile
    routes["/simple/a/"] = (200, HTML_PAGE, b"<a href='/files/a-1.0.tar.gz'>a-1.0.tar.gz</a>")
    simple = _mirror(mserver, root, base)
    for name in ("a%23other", "a%3Fq=1", "a%2Fb", "-a-"):
        r = page(simple, name + "/")
        assert r.status_code == 404, (name, r.status_code, r.text)
        assert r.headers["Content-Type"] == "application/json"
    assert asked == []


def test_a_304_nobody_asked_for_is_a_failure(mserver, root, hostile):
    base, routes, _ = hostile
    routes["/simple/nc/"] = (200, HTML_PAGE, b"<a href='/files/nc-1.0.tar.gz'>nc-1.0.tar.gz</a>")
    simple = _mirror(mserver, root, base, mirror_cache_expiry=0)
    assert filenames(page(simple, "nc/")) == ["nc-1.0.tar.gz"]
    assert "X-Devpi-Stale" not in page(simple, "nc/").headers
    routes["/simple/nc/"] = (304, {}, b"")  # no ETag or Last-Modified was ever sent: not a revalidation
    r = page(simple, "nc/")
    assert filenames(r) == ["nc-1.0.tar.gz"]
    assert "X-Devpi-Stale" in r.headers
