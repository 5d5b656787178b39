"""Self-test of the local upstream index (tests/support/upstream.py).

Drives it with requests, raw sockets and real pip (and uv when present) on
127.0.0.1 only, so that the mirror tests can trust what it serves.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

try:
    from support.upstream import HTML_TYPE, JSON_TYPE, RequestRecord, Upstream, make_wheel
except ImportError:  # run without tests/conftest.py, which puts tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.upstream import HTML_TYPE, JSON_TYPE, RequestRecord, Upstream, make_wheel

PIP_ACCEPT = f"{JSON_TYPE}, {HTML_TYPE}; q=0.1, text/html; q=0.01"


@pytest.fixture
def up():
    with Upstream() as upstream:
        yield upstream


@pytest.fixture
def http():
    with requests.Session() as s:
        s.trust_env = False  # no proxies from the environment: 127.0.0.1 only
        yield s


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.meta: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "meta":
            d = dict(attrs)
            self.meta[d.get("name") or ""] = d.get("content")


def anchors(page: str) -> list[dict[str, str | None]]:
    p = _Links()
    p.feed(page)
    return p.anchors


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) and "proxy" not in k.lower()
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
    )
    env.update(extra)
    return env


def pip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", *args, "--no-cache-dir", "--isolated"]
    proc = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=120)
    if check and proc.returncode:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- pages ------------------------------------------------------------------


def test_url_and_lifecycle_basics():
    upstream = Upstream()
    try:
        assert upstream.url == f"http://127.0.0.1:{upstream.port}/simple/"
        assert upstream.base == f"http://127.0.0.1:{upstream.port}"
        assert not upstream.running
        upstream.start()
        assert upstream.running
        assert requests.get(upstream.url, timeout=5).status_code == 200
    finally:
        upstream.stop()
    assert not upstream.running


def test_project_list_html_and_json(up, http):
    up.add_wheel("Zope.Interface", "1.0")
    up.add_wheel("alpha", "1.0")
    r = http.get(up.url)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    links = anchors(r.text)
    assert [a["href"] for a in links] == ["alpha/", "zope-interface/"]
    assert "Zope.Interface" in r.text
    r = http.get(up.url, headers={"Accept": JSON_TYPE})
    assert r.headers["Content-Type"] == JSON_TYPE
    assert r.json() == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "alpha"}, {"name": "Zope.Interface"}],
    }


def test_project_page_html(up, http):
    lib = up.add_wheel("Foo_Lib", "1.0", requires_python=">=3.8, <4")
    sdist = up.add_sdist("Foo_Lib", "1.0")
    yanked = up.add_wheel("Foo_Lib", "0.9", yanked="broken build")
    plain_yank = up.add_file("Foo_Lib", "foo_lib-0.8.tar.gz", b"old", yanked=True)
    r = http.get(up.page_url("foo-lib"), headers={"Accept": "text/html"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<meta name="pypi:repository-version" content="1.1">' in r.text
    assert "&gt;=3.8, &lt;4" in r.text  # data-requires-python is escaped
    links = {a["href"].split("#")[0].rsplit("/", 1)[1]: a for a in anchors(r.text)}
    assert list(links) == [lib.filename, sdist.filename, yanked.filename, plain_yank.filename]
    a = links[lib.filename]
    assert a["data-requires-python"] == ">=3.8, <4"
    assert a["data-core-metadata"] == a["data-dist-info-metadata"] == f"sha256={sha256(lib.core_metadata)}"
    assert "data-yanked" not in a
    assert "data-core-metadata" not in links[sdist.filename]
    assert links[yanked.filename]["data-yanked"] == "broken build"
    assert links[plain_yank.filename]["data-yanked"] == ""
    for f in (lib, sdist, yanked, plain_yank):
        href = links[f.filename]["href"]
        assert not href.startswith("http")  # relative by default
        url, _, fragment = urljoin(r.url, href).partition("#")
        assert url == f.url
        assert fragment == f"sha256={f.sha256}"
        got = http.get(url)
        assert got.status_code == 200
        assert got.content == f.content
        assert int(got.headers["Content-Length"]) == f.size
        assert sha256(got.content) == f.sha256


@pytest.mark.parametrize("absolute", [False, True])
def test_project_page_json(up, http, absolute):
    up.absolute_links = absolute
    lib = up.add_wheel("foo-lib", "1.0", requires_python=">=3.8", upload_time="2024-01-02T03:04:05.000000Z")
    up.add_wheel("foo-lib", "1.10")
    up.add_wheel("foo-lib", "1.9", yanked=True)
    sdist = up.add_sdist("foo-lib", "1.0")
    r = http.get(up.page_url("foo-lib"), headers={"Accept": JSON_TYPE})
    assert r.headers["Content-Type"] == JSON_TYPE
    doc = r.json()
    assert doc["meta"] == {"api-version": "1.1"}
    assert doc["name"] == "foo-lib"
    assert doc["versions"] == ["1.0", "1.9", "1.10"]
    files = {f["filename"]: f for f in doc["files"]}
    entry = files[lib.filename]
    assert entry == {
        "filename": lib.filename,
        "url": lib.url if absolute else f"../../files/{lib.sha256[:16]}/{lib.filename}",
        "hashes": {"sha256": lib.sha256},
        "requires-python": ">=3.8",
        "core-metadata": {"sha256": sha256(lib.core_metadata)},
        "dist-info-metadata": {"sha256": sha256(lib.core_metadata)},
        "size": lib.size,
        "upload-time": "2024-01-02T03:04:05.000000Z",
    }
    assert files["foo_lib-1.9-py3-none-any.whl"]["yanked"] is True
    assert "yanked" not in entry and "core-metadata" not in files[sdist.filename]
    assert files[sdist.filename]["upload-time"].endswith("Z")
    for f in doc["files"]:
        url = urljoin(r.url, f["url"])
        assert urlsplit(url).netloc == f"127.0.0.1:{up.port}"
        assert sha256(http.get(url).content) == f["hashes"]["sha256"]
    meta = http.get(urljoin(r.url, entry["url"]) + ".metadata")
    assert meta.status_code == 200
    assert sha256(meta.content) == entry["core-metadata"]["sha256"]
    assert b"Name: foo-lib\nVersion: 1.0\n" in meta.content


def test_absolute_links_in_html(up, http):
    up.absolute_links = True
    f = up.add_wheel("foo", "1.0")
    assert anchors(http.get(up.page_url("foo")).text)[0]["href"] == f"{f.url}#sha256={f.sha256}"
    assert anchors(http.get(up.url).text)[0]["href"] == up.page_url("foo")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        ("text/html", "text/html"),
        (HTML_TYPE, HTML_TYPE),
        (JSON_TYPE, JSON_TYPE),
        ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
        (PIP_ACCEPT, JSON_TYPE),
        (f"{JSON_TYPE}; q=0.2, {HTML_TYPE}", HTML_TYPE),
        (f"{JSON_TYPE}; q=0, text/html", "text/html"),
        ("application/json", None),
    ],
)
def test_content_negotiation(up, http, accept, expected):
    up.add_wheel("foo", "1.0")
    headers = {"Accept": accept} if accept else {}
    if accept is None:
        headers = {"Accept": ""}
    for url in (up.url, up.page_url("foo")):
        r = http.get(url, headers=headers)
        if expected is None:
            assert r.status_code == 406
            continue
        assert r.status_code == 200
        assert r.headers["Content-Type"].split(";")[0] == expected
        assert "Accept" in r.headers["Vary"]
        if expected == JSON_TYPE:
            r.json()
        else:
            assert r.text.startswith("<!DOCTYPE html>")


def test_format_query_and_html_only_mode(up, http):
    up.add_wheel("foo", "1.0")
    r = http.get(up.page_url("foo"), params={"format": JSON_TYPE})
    assert r.headers["Content-Type"] == JSON_TYPE
    up.serve_json = False
    r = http.get(up.page_url("foo"), headers={"Accept": PIP_ACCEPT})
    assert r.headers["Content-Type"].startswith("text/html")


def test_redirects_and_404(up, http):
    up.add_wheel("Foo.Bar", "1.0")
    for path in (
        "/simple/Foo.Bar/",
        "/simple/foo_bar/",
        "/simple/FOO-BAR/",
        "/simple/foo-bar",
        "/simple/Foo.Bar",
    ):
        r = http.get(up.base + path, allow_redirects=False)
        assert r.status_code == 301, path
        assert r.headers["Location"] == "/simple/foo-bar/"
    r = http.get(up.base + "/simple/Foo.Bar/", headers={"Accept": JSON_TYPE})
    assert r.url == up.page_url("foo-bar")
    assert r.json()["name"] == "foo-bar"
    assert http.get(up.base + "/simple", allow_redirects=False).headers["Location"] == "/simple/"
    assert http.get(up.page_url("nope")).status_code == 404
    assert http.get(up.base + "/files/0123/nope-1.0.tar.gz").status_code == 404
    sdist = up.add_sdist("Foo.Bar", "1.0")
    assert http.get(sdist.url + ".metadata").status_code == 404  # no core metadata for this one
    up.remove_project("foo.bar")
    assert http.get(up.page_url("foo-bar")).status_code == 404
    assert http.get(sdist.url).status_code == 404
    assert http.get(up.url).text.count("<a ") == 0


def test_head_requests(up, http):
    f = up.add_wheel("foo", "1.0")
    r = http.head(f.url)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == f.size
    assert r.content == b""
    r = http.head(up.page_url("foo"))
    assert r.status_code == 200 and "ETag" in r.headers


# -- caching headers, serials ------------------------------------------------


@pytest.mark.parametrize("accept", ["text/html", JSON_TYPE])
def test_etag_and_if_none_match(up, http, accept):
    up.add_wheel("foo", "1.0")
    url = up.page_url("foo")
    r1 = http.get(url, headers={"Accept": accept})
    etag = r1.headers["ETag"]
    assert etag.startswith('"')
    assert http.get(url, headers={"Accept": accept}).headers["ETag"] == etag  # deterministic
    r = http.get(url, headers={"Accept": accept, "If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["ETag"] == etag
    assert r.headers["X-PyPI-Last-Serial"] == r1.headers["X-PyPI-Last-Serial"]
    assert http.get(url, headers={"Accept": accept, "If-None-Match": f'"x", W/{etag}'}).status_code == 304
    other = JSON_TYPE if accept == "text/html" else "text/html"
    assert http.get(url, headers={"Accept": other, "If-None-Match": etag}).status_code == 200
    up.add_wheel("unrelated", "1.0")  # another project changing does not change this page
    assert http.get(url, headers={"Accept": accept, "If-None-Match": etag}).status_code == 304
    up.add_wheel("foo", "2.0")
    r = http.get(url, headers={"Accept": accept, "If-None-Match": etag})
    assert r.status_code == 200
    assert r.headers["ETag"] != etag
    assert "2.0" in r.text
    # the project list has its own etag
    lst = http.get(up.url)
    assert http.get(up.url, headers={"If-None-Match": lst.headers["ETag"]}).status_code == 304
    up.add_wheel("newproject", "1.0")
    assert http.get(up.url, headers={"If-None-Match": lst.headers["ETag"]}).status_code == 200


def test_if_modified_since(up, http):
    up.add_wheel("foo", "1.0")
    url = up.page_url("foo")
    lm = http.get(url).headers["Last-Modified"]
    assert http.get(url, headers={"If-Modified-Since": lm}).status_code == 304
    up.add_wheel("foo", "1.1")  # within the same second: still seen as modified
    r = http.get(url, headers={"If-Modified-Since": lm})
    assert r.status_code == 200
    assert r.headers["Last-Modified"] != lm
    up.send_etag = False
    r = http.get(url)
    assert "ETag" not in r.headers
    assert http.get(url, headers={"If-Modified-Since": r.headers["Last-Modified"]}).status_code == 304


def test_serial_header(up, http):
    assert http.get(up.url).headers["X-PyPI-Last-Serial"] == "0"
    up.add_wheel("foo", "1.0")
    up.add_sdist("foo", "1.0")
    assert up.serial == 2
    r = http.get(up.page_url("foo"))
    assert r.headers["X-PyPI-Last-Serial"] == "2"
    up.yank("foo-1.0.tar.gz", "bad")
    assert up.serial == 3
    up.remove_file("foo-1.0.tar.gz")
    assert up.serial == 4
    up.serial = 1  # pretend to be an older upstream (e.g. a lagging replica)
    assert http.get(up.page_url("foo")).headers["X-PyPI-Last-Serial"] == "1"
    up.add_wheel("foo", "2.0")
    assert http.get(up.page_url("foo")).headers["X-PyPI-Last-Serial"] == "2"


# -- request log -------------------------------------------------------------


def test_request_log(up, http):
    f = up.add_wheel("foo", "1.0")
    http.get(up.url + "Foo/", headers={"Accept": JSON_TYPE, "X-Test": "yes"})
    http.get(f.url)
    http.get(f.url + ".metadata")
    http.head(f.url)
    log = up.requests
    assert [(r.method, r.path, r.status) for r in log] == [
        ("GET", "/simple/Foo/", 301),
        ("GET", "/simple/foo/", 200),
        ("GET", f.path, 200),
        ("GET", f.path + ".metadata", 200),
        ("HEAD", f.path, 200),
    ]
    assert log[1].header("accept") == JSON_TYPE
    assert log[1].header("x-test") == "yes"
    assert log[0].project == log[1].project == "foo"
    assert log[2].filename == f.filename
    assert isinstance(log[0], RequestRecord)
    assert up.count("/simple/") == 2
    assert up.count("/files/") == 3
    assert up.count(lambda r: r.method == "HEAD") == 1
    assert up.downloads(f.filename) == 1
    assert up.count() == 5
    up.reset_log()
    assert up.requests == []


def test_concurrent_downloads_are_all_served_and_counted(up):
    f = up.add_wheel("foo", "1.0", extra_files={"foo/big.bin": os.urandom(300_000)})
    up.delay = 0.2
    results: list[bytes] = []

    def fetch() -> None:
        results.append(requests.get(f.url, timeout=10).content)

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < 2  # served in parallel, not one after the other
    assert len(results) == 20 and all(r == f.content for r in results)
    assert up.downloads(f.filename) == 20


# -- failure switches --------------------------------------------------------


def test_fail_status_global_and_targeted(up, http):
    foo = up.add_wheel("foo", "1.0")
    bar = up.add_wheel("bar", "1.0")
    up.fail_status = 503
    for url in (up.url, up.page_url("foo"), foo.url):
        r = http.get(url)
        assert r.status_code == 503
        assert up.requests[-1].status == 503
    up.fail_status = None
    up.fail["foo"] = 500  # a project: its page and its files
    assert http.get(up.page_url("foo")).status_code == 500
    assert http.get(foo.url).status_code == 500
    assert http.get(up.page_url("bar")).status_code == 200
    assert http.get(up.url).status_code == 200
    up.fail.clear()
    up.fail[bar.filename] = 502  # one file only
    assert http.get(bar.url).status_code == 502
    assert http.get(up.page_url("bar")).status_code == 200
    up.fail.clear()
    up.fail["/simple/"] = 500  # a path prefix
    assert http.get(up.url).status_code == 500
    assert http.get(foo.url).status_code == 200


def test_delay_global_and_per_path(up, http):
    f = up.add_wheel("foo", "1.0")
    up.delay = 0.3
    t0 = time.monotonic()
    assert http.get(up.page_url("foo")).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    up.delay = 0
    up.delays["/files/"] = 0.3
    t0 = time.monotonic()
    http.get(up.page_url("foo"))
    assert time.monotonic() - t0 < 0.29
    t0 = time.monotonic()
    assert http.get(f.url).content == f.content
    assert time.monotonic() - t0 >= 0.3
    up.delays.clear()
    up.delay = 5
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(up.page_url("foo"), timeout=0.3)


def test_slow_transfer(up, http):
    f = up.add_wheel("foo", "1.0", extra_files={"foo/big.bin": os.urandom(200_000)})
    up.chunk_delay = 0.1
    t0 = time.monotonic()
    assert http.get(f.url).content == f.content
    assert time.monotonic() - t0 >= 0.3  # at least 4 chunks of 64 KiB


def test_hang_until_cleared_or_stopped(up, http):
    up.add_wheel("foo", "1.0")
    up.hang = True
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(up.page_url("foo"), timeout=0.3)
    assert up.requests[-1].status is None  # received, never answered
    result: dict[str, object] = {}

    def hanging() -> None:
        try:
            result["r"] = requests.get(up.page_url("foo"), timeout=10)
        except requests.RequestException as e:
            result["e"] = e

    t = threading.Thread(target=hanging)
    t.start()
    time.sleep(0.2)
    up.hang = False  # released
    t.join(5)
    assert result["r"].status_code == 200
    up.hang_targets.add("foo")  # only this project hangs
    assert http.get(up.url, timeout=2).status_code == 200
    t = threading.Thread(target=hanging)
    result.clear()
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    up.stop()  # stop() cuts hanging requests at once
    t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 2
    assert isinstance(result["e"], requests.ConnectionError)


def test_truncated_files(up, http):
    f = up.add_wheel("foo", "1.0", extra_files={"foo/big.bin": os.urandom(100_000)})
    g = up.add_sdist("foo", "1.0")
    up.truncate_files = True
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(f.url)
    # raw view: the full length is announced, half the bytes arrive, then the connection closes
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as s:
        s.sendall(f"GET {f.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert f"Content-Length: {f.size}".encode() in head
    assert body == f.content[: f.size // 2]
    assert http.get(up.page_url("foo")).status_code == 200  # pages are unaffected
    up.truncate_files = False
    up.truncate.add(g.filename)
    assert http.get(f.url).content == f.content
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(g.url)


def test_wrong_hash(up, http):
    f = up.add_wheel("foo", "1.0")
    g = up.add_sdist("foo", "1.0")
    up.wrong_hash.add(f.filename)
    page = http.get(up.page_url("foo"), headers={"Accept": JSON_TYPE}).json()
    hashes = {e["filename"]: e["hashes"]["sha256"] for e in page["files"]}
    assert hashes[f.filename] != f.sha256
    assert hashes[g.filename] == g.sha256
    html = http.get(up.page_url("foo")).text
    assert f"#sha256={f.sha256}" not in html and f"#sha256={g.sha256}" in html
    assert sha256(http.get(f.url).content) == f.sha256  # the bytes are the real ones
    up.wrong_hash.add("foo")  # a whole project
    page = http.get(up.page_url("foo"), headers={"Accept": JSON_TYPE}).json()
    assert all(e["hashes"]["sha256"] not in (f.sha256, g.sha256) for e in page["files"])


def test_garbage_pages(up, http):
    f = up.add_wheel("foo", "1.0")
    up.add_wheel("bar", "1.0")
    etag = http.get(up.page_url("foo")).headers["ETag"]
    up.garbage_pages = True
    r = http.get(up.page_url("foo"), headers={"Accept": JSON_TYPE})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_TYPE
    with pytest.raises(ValueError):
        r.json()
    r = http.get(up.page_url("foo"), headers={"If-None-Match": etag})
    assert r.status_code == 200 and anchors(r.text) == []
    assert http.get(f.url).content == f.content  # files are unaffected
    up.garbage_pages = False
    up.garbage.add("foo")
    assert anchors(http.get(up.page_url("foo")).text) == []
    assert len(anchors(http.get(up.page_url("bar")).text)) == 1


def test_stop_and_restart_on_same_port(up, http):
    f = up.add_wheel("foo", "1.0")
    port = up.port
    assert http.get(up.page_url("foo")).status_code == 200  # leaves a keep-alive connection in the pool
    up.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(up.page_url("foo"), timeout=2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    up.start()
    assert up.port == port
    assert http.get(f.url).content == f.content
    up.stop_serving()
    with pytest.raises(requests.ConnectionError):
        http.get(f.url, timeout=2)
    up.resume()
    assert http.get(f.url).status_code == 200


# -- distributions and real clients ------------------------------------------


def test_wheel_is_well_formed():
    filename, data, metadata = make_wheel("Foo.Bar", "2.0", requires_dist=["baz>=1"], requires_python=">=3.8")
    assert filename == "foo_bar-2.0-py3-none-any.whl"
    assert make_wheel("Foo.Bar", "2.0", requires_dist=["baz>=1"], requires_python=">=3.8")[1] == data
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert "foo_bar/__init__.py" in names
        assert zf.read("foo_bar-2.0.dist-info/METADATA") == metadata
        record = zf.read("foo_bar-2.0.dist-info/RECORD").decode().splitlines()
        assert len(record) == len(names)
        for line in record:
            path, digest, size = line.rsplit(",", 2)
            if path.endswith("RECORD"):
                continue
            content = zf.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(content)
    assert b"Requires-Dist: baz>=1\n" in metadata and b"Requires-Python: >=3.8\n" in metadata


def test_sdist_is_well_formed(up):
    f = up.add_sdist("Foo.Bar", "2.0", requires_dist=["baz>=1"])
    assert f.filename == "foo_bar-2.0.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(f.content)) as tf:
        names = tf.getnames()
        assert set(names) == {
            "foo_bar-2.0/PKG-INFO",
            "foo_bar-2.0/pyproject.toml",
            "foo_bar-2.0/foo_bar/__init__.py",
        }
        pyproject = tomllib.loads(tf.extractfile("foo_bar-2.0/pyproject.toml").read().decode())
        pkg_info = tf.extractfile("foo_bar-2.0/PKG-INFO").read()
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert pyproject["project"]["dependencies"] == ["baz>=1"]
    assert b"Name: Foo.Bar\nVersion: 2.0\n" in pkg_info


@pytest.mark.parametrize(
    ("serve_json", "absolute"), [(True, False), (False, False), (True, True), (False, True)]
)
def test_pip_download(up, tmp_path, serve_json, absolute):
    up.serve_json = serve_json
    up.absolute_links = absolute
    up.add_wheel("Foo.Bar", "1.0")
    newest = up.add_wheel("Foo.Bar", "1.1")
    up.add_wheel("Foo.Bar", "1.2", yanked="broken")  # pip skips yanked releases
    up.add_wheel("Foo.Bar", "2.0", requires_python=">=4")  # and ones for another Python
    up.add_sdist("Foo.Bar", "1.1")
    pip(
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--index-url",
        up.url,
        "--dest",
        str(tmp_path),
        "foo_bar",
    )
    assert [p.name for p in tmp_path.iterdir()] == [newest.filename]
    assert (tmp_path / newest.filename).read_bytes() == newest.content
    json_asked = [r for r in up.requests if r.path == "/simple/foo-bar/"]
    assert json_asked and JSON_TYPE in json_asked[0].header("Accept", "")
    assert up.downloads(newest.filename) == 1


def test_pip_install_with_dependency(up, tmp_path):
    up.add_wheel("app", "1.0", requires_dist=["Lib.Core>=2"])
    up.add_wheel("lib-core", "1.0")
    lib = up.add_wheel("lib-core", "2.0")
    target = tmp_path / "target"
    pip("install", "--index-url", up.url, "--target", str(target), "app")
    assert (target / "app" / "__init__.py").exists()
    assert '__version__ = "2.0"' in (target / "lib_core" / "__init__.py").read_text()
    assert up.count("/simple/lib-core/") == 1
    assert up.downloads(lib.filename) == 1
    assert up.count(lambda r: r.path.endswith(".metadata")) >= 1  # pip used the PEP 658 metadata
    proc = subprocess.run(
        [sys.executable, "-c", "import app, lib_core; print(app.__version__, lib_core.__version__)"],
        env={**clean_env(), "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.split() == ["1.0", "2.0"]


def test_pip_rejects_wrong_hash(up, tmp_path):
    f = up.add_wheel("foo", "1.0")
    up.wrong_hash.add(f.filename)
    proc = pip("download", "--no-deps", "--index-url", up.url, "--dest", str(tmp_path), "foo", check=False)
    assert proc.returncode != 0
    assert "hash" in (proc.stdout + proc.stderr).lower()
    assert not (tmp_path / f.filename).exists()


def test_pip_fails_on_truncated_file(up, tmp_path):
    f = up.add_wheel("foo", "1.0", extra_files={"foo/big.bin": os.urandom(50_000)})
    up.truncate.add(f.filename)
    proc = pip(
        "download",
        "--no-deps",
        "--retries",
        "0",
        "--index-url",
        up.url,
        "--dest",
        str(tmp_path),
        "foo",
        check=False,
    )
    assert proc.returncode != 0
    assert not (tmp_path / f.filename).exists()


def test_pip_sees_nothing_on_garbage(up, tmp_path):
    up.add_wheel("foo", "1.0")
    up.garbage_pages = True
    proc = pip("download", "--no-deps", "--index-url", up.url, "--dest", str(tmp_path), "foo", check=False)
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []


def _can_build_wheels() -> bool:
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    return importlib.util.find_spec("wheel") is not None or major >= 71


@pytest.mark.skipif(
    not _can_build_wheels(), reason="setuptools here cannot build wheels (no 'wheel' package)"
)
def test_pip_builds_and_installs_sdist(up, tmp_path):
    up.add_sdist("Foo.Bar", "3.0")
    target = tmp_path / "target"
    pip(
        "install",
        "--no-build-isolation",
        "--no-binary",
        ":all:",
        "--index-url",
        up.url,
        "--target",
        str(target),
        "foo-bar",
    )
    assert '__version__ = "3.0"' in (target / "foo_bar" / "__init__.py").read_text()


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv not installed")
def test_uv_install_with_dependency(up, tmp_path):
    up.add_wheel("app", "1.0", requires_dist=["lib-core"])
    up.add_wheel("lib-core", "2.0")
    target = tmp_path / "target"
    cmd = ["uv", "pip", "install", "--no-cache", "--python", sys.executable, "--index-url", up.url]
    cmd += ["--target", str(target), "app"]
    proc = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (target / "lib_core" / "__init__.py").exists()
    assert all(
        r.header("Accept", "").startswith(JSON_TYPE) for r in up.requests if r.path.startswith("/simple/")
    )


def test_cli_demo(http):
    script = Path(__file__).with_name("upstream.py")
    cmd = [sys.executable, str(script), "--demo"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=clean_env()) as proc:
        try:
            line = proc.stdout.readline()
            assert line.startswith("serving http://127.0.0.1:")
            url = line.split()[1]
            assert "demo-app/" in http.get(url, timeout=5).text
            page = http.get(url + "demo-lib/", headers={"Accept": JSON_TYPE}, timeout=5).json()
            assert page["versions"] == ["1.0", "2.0"]
        finally:
            proc.terminate()
