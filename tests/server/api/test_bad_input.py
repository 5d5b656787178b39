"""Bad input gets a 4xx JSON message, the server keeps running, and nothing is stored."""
from __future__ import annotations

import base64
import io
import os
import zipfile

import pytest
import requests
from srv_helpers import new_stage, raw_upload, serial
from support.dists import sdist_bytes, wheel_bytes


@pytest.fixture(scope="module")
def bad(module_servers, request):
    """One server (100 KiB upload limit) with a stage that must stay empty."""
    storage = None
    if request.param == "postgresql":
        storage = request.getfixturevalue("pg_cluster").new_database()
    s = module_servers(storage=storage, args=("--max-upload-size", "100K"))
    auth, index = new_stage(s, "pw")
    return s, auth, index


def pytest_generate_tests(metafunc):
    if "bad" in metafunc.fixturenames:
        metafunc.parametrize("bad", ["sqlite", "postgresql"], indirect=True, scope="module")


def assert_refused(r: requests.Response, status: int | tuple[int, ...], text: str = "") -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json", r.headers
    message = r.json()["message"]
    assert message and text in message, message


@pytest.fixture
def nothing_stored(bad):
    s, auth, index = bad
    before = serial(s)
    yield
    assert s.api("GET", "/+api").status_code == 200  # still running
    assert serial(s) == before
    assert s.api("GET", f"/{index}").json()["result"]["projects"] == []
    blobs = s.serverdir / "blobs"
    kept = [p for p in blobs.rglob("*") if p.is_file() and p.name not in ("LAYOUT", ".owner")]
    # empty spare-* files are made ahead for mirror downloads; anything else would be a blob
    assert [p for p in kept if not (p.name.startswith("spare-") and p.stat().st_size == 0)] == []


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"XyZ") -> bytes:
    out = b""
    for headers, body in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + body + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def field(name: str, value: str) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"'.encode(), value.encode()


def content(filename: bytes, data: bytes) -> tuple[bytes, bytes]:
    return (b'Content-Disposition: form-data; name="content"; filename="' + filename + b'"\r\n'
            b"Content-Type: application/octet-stream", data)


def post(s, index, body: bytes, ctype: str = "multipart/form-data; boundary=XyZ") -> requests.Response:
    auth = base64.b64encode(b"%s:pw" % index.split("/")[0].encode()).decode()
    return requests.post(f"{s.url}/{index}/", data=body, timeout=30,
                         headers={"Content-Type": ctype, "Authorization": f"Basic {auth}"})


def upload_form(name: str, version: str, filename: bytes, data: bytes) -> bytes:
    return multipart([field(":action", "file_upload"), field("name", name), field("version", version),
                      content(filename, data)])


def test_malformed_multipart(bad, nothing_stored):
    s, _, index = bad
    good = upload_form("pkg", "1.0", b"pkg-1.0.tar.gz", sdist_bytes("pkg", "1.0")[1])
    cases = [
        (b"this is not multipart at all", "multipart/form-data"),          # no boundary
        (b"garbage without any boundary", "multipart/form-data; boundary=XyZ"),
        (good[: len(good) // 2], "multipart/form-data; boundary=XyZ"),     # cut in the middle of the file
        (good.replace(b"--XyZ--\r\n", b""), "multipart/form-data; boundary=XyZ"),  # no closing boundary
        (b"--XyZ\r\nno headers here\r\n--XyZ--\r\n", "multipart/form-data; boundary=XyZ"),
        (good, "multipart/form-data; boundary=Other"),                    # wrong boundary
    ]
    for body, ctype in cases:
        assert_refused(post(s, index, body, ctype), 400)
    # a well-formed body without the parts an upload needs
    assert_refused(post(s, index, multipart([field("name", "pkg")])), 400, ":action field not found")
    assert_refused(post(s, index, multipart([field(":action", "file_upload"), field("name", "pkg"),
                                             field("version", "1.0")])), 400, "content file field not found")
    assert_refused(post(s, index, multipart([field(":action", "frobnicate"), field("name", "pkg"),
                                             content(b"pkg-1.0.tar.gz", b"x")])), 400, "unknown :action")


@pytest.mark.parametrize("filename", [b"../pkg-1.0.tar.gz", b"../../etc/pkg-1.0.tar.gz", b"sub/pkg-1.0.tar.gz",
                                      b"..\\pkg-1.0.tar.gz", b"pkg\x00-1.0.tar.gz", b"pkg-1.0.tar.gz\x00.whl",
                                      b".pkg-1.0.tar.gz", b"pkg-1.0\n.tar.gz"])
def test_bad_filenames(bad, nothing_stored, filename):
    s, _, index = bad
    data = sdist_bytes("pkg", "1.0")[1]
    r = post(s, index, upload_form("pkg", "1.0", filename, data))
    assert_refused(r, 400)


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_names_versions_and_broken_archives(bad, nothing_stored):
    s, auth, index = bad
    creds = (auth[0], "pw")
    sfn, sdata = sdist_bytes("pkg", "1.0")
    wfn, wdata = wheel_bytes("pkg", "1.0")
    cases = [
        (sfn, sdata, {"name": "other", "version": "1.0"}, "does not belong to project"),
        (wfn, wdata, {"name": "pkg", "version": "2.0"}, "does not contain version"),
        ("pkg-latest.tar.gz", sdata, {"name": "pkg", "version": "latest"}, "not a PEP 440 version"),
        ("pkg-1.0 beta.tar.gz", sdata, {"name": "pkg", "version": "1.0 beta"}, "not a PEP 440 version"),
        (sfn, sdata, {"name": "bad name!", "version": "1.0"}, "invalid project name"),
        (sfn, sdata, {"name": "", "version": "1.0"}, "invalid project name"),
        ("pkg-1.0.exe.txt", sdata, {"name": "pkg", "version": "1.0"}, "not a valid archive name"),
        (wfn, wdata[: len(wdata) // 2], {"name": "pkg", "version": "1.0"}, "not a readable archive"),
        (sfn, sdata[: len(sdata) // 2], {"name": "pkg", "version": "1.0"}, "not a readable archive"),
        (wfn, b"PK\x03\x04 definitely not a zip", {"name": "pkg", "version": "1.0"}, "not a readable archive"),
        (sfn, b"", {"name": "pkg", "version": "1.0"}, "empty file"),
        (wfn, wheel_bytes("other", "1.0")[1], {"name": "pkg", "version": "1.0"}, "metadata names project 'other'"),
        (wfn, _zip({"pkg/__init__.py": "x = 1\n"}), {"name": "pkg", "version": "1.0"}, "no .dist-info/METADATA"),
        (wfn, wheel_bytes("pkg", "garbage")[1], {"name": "pkg", "version": "1.0"}, "metadata has version 'garbage'"),
        (sfn, sdist_bytes("pkg", "garbage")[1], {"name": "pkg", "version": "1.0"}, "metadata has version 'garbage'"),
    ]
    for filename, data, fields, message in cases:
        assert_refused(raw_upload(s, index, filename, data, creds, **fields), 400, message)


def test_oversized_bodies(bad, nothing_stored):
    s, auth, index = bad
    creds = (auth[0], "pw")
    fn, data = wheel_bytes("pkg", "1.0", module_body=f"X = {os.urandom(100_000).hex()!r}\n")
    assert len(data) > 100 * 1024
    # over the limit: refused by the upload view
    assert_refused(raw_upload(s, index, fn, data, creds, name="pkg", version="1.0"), 413, "too large")
    # far over the limit: refused before the body is even handed over, still as JSON
    huge = os.urandom(3 * 1024 * 1024)
    assert_refused(raw_upload(s, index, "pkg-1.0.tar.gz", huge, creds, name="pkg", version="1.0"), 413,
                   "too large")
    # chunked, without a Content-Length
    r = requests.post(f"{s.url}/{index}/", auth=creds, timeout=30,
                      data=iter([b"--XyZ\r\n", huge, b"\r\n--XyZ--\r\n"]),
                      headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert_refused(r, 413, "too large")
    # a doc zip too
    r = requests.post(f"{s.url}/{index}/", auth=creds, timeout=30, files={"content": ("d.zip", data)},
                      data={":action": "doc_upload", "name": "pkg", "version": "1.0"})
    assert_refused(r, 413, "too large")


def test_bad_json_to_the_json_api(bad, nothing_stored):
    s, auth, index = bad
    user = auth[0]
    for method, path in (("PUT", "/newuser"), ("PATCH", f"/{user}"), ("PUT", f"/{user}/newindex"),
                         ("PATCH", f"/{index}"), ("POST", "/+login"), ("PUSH", f"/{index}"),
                         ("POST", f"/{index}/pkg/1.0/+yank")):
        for body in (b"{", b"[1, 2", b"\xff\xfe not utf8", b"{'single': 'quotes'}", b'{"title": NaN}',
                     b'{"mirror_cache_expiry": Infinity}', b'{"x": -Infinity}'):
            r = s.api(method, path, data=body, auth=auth, headers={"Content-Type": "application/json"})
            assert_refused(r, 400, "could not decode json")
    # well-formed JSON of the wrong shape
    for method, path, body, message in (
            ("PUT", "/newuser", [1, 2], "must be a JSON object"),
            ("PATCH", f"/{user}", "text", "must be a JSON object"),
            ("PUT", "/newuser", {"password": 5}, "password must be a string"),
            ("PUT", f"/{user}/newindex", [1], "must be a JSON object"),
            ("PATCH", f"/{index}", [1], "key=value"),
            ("POST", "/+login", [1], "no user/password"),
            ("PUSH", f"/{index}", [], "push needs a JSON object"),
            ("PUSH", f"/{index}", {"name": "pkg", "version": "1.0", "bogus": 1}, "unknown additional options")):
        assert_refused(s.api(method, path, json=body, auth=auth), 400, message)
    assert s.api("GET", "/newuser").status_code == 404


def test_config_values_of_the_wrong_kind(bad, nothing_stored):
    s, auth, index = bad
    user = auth[0]
    mirror = {"type": "mirror", "mirror_url": "http://127.0.0.1:9/simple/"}
    for path, body, message in (
            (f"/{user}/m2", {**mirror, "mirror_cache_expiry": 1e300}, "expected a number from 0"),
            (f"/{user}/m3", {**mirror, "mirror_cache_expiry": True}, "expected a whole number"),
            (f"/{user}/s1", {"acl_upload": [None]}, "list of strings"),
            (f"/{user}/s2", {"bases": [5]}, "list of strings"),
            (f"/{user}/s3", {"volatile": 5}, "expected a boolean"),
            (f"/{user}/s4", {"mirror_whitelist": ["priv*"]}, "no project name"),
            (f"/{user}/s5", {"mirror_whitelist": "ok,../x"}, "no project name")):
        assert_refused(s.api("PUT", path, json=body, auth=auth), 400, message)
    # a number too large for a float would read as infinity: not taken as JSON at all
    too_large = b'{"type": "mirror", "mirror_url": "http://127.0.0.1:9/simple/", "mirror_cache_expiry": 1e400}'
    r = s.api("PUT", f"/{user}/m1", data=too_large, auth=auth, headers={"Content-Type": "application/json"})
    assert_refused(r, 400, "could not decode json")
    assert_refused(s.api("PATCH", f"/{index}", json=["type=mirror"], auth=auth), 400, "can't be changed")
    assert_refused(s.api("PATCH", f"/{index}", json=["volatile=5"], auth=auth), 400, "expected a boolean")
    assert s.api("GET", f"/{user}/m1").status_code == 404


def test_paths_and_headers_that_are_not_text(bad, nothing_stored):
    s, auth, index = bad
    user = auth[0]
    # a percent-escape that is no UTF-8 must not be dropped: the DELETE would hit the index itself
    for method, path in (("DELETE", f"/{index}%ff"), ("GET", "/%ff"), ("GET", f"/{user}/%ff%fe"),
                         ("DELETE", f"/{user}%c3")):
        assert_refused(s.api(method, path, auth=auth), 400, "not valid UTF-8")
    assert s.api("GET", f"/{index}").status_code == 200
    # a control character in a name ends up in the message: the status line stays valid
    assert_refused(s.api("GET", f"/{user}/%00x"), (400, 404))
    assert_refused(s.api("GET", f"/{user}/a%0d%0ab"), (400, 404))
    # credentials that are not text are no credentials (no 500 while reading them)
    sdist = sdist_bytes("pkg", "1.0")[1]
    for header, value in (("Authorization", b"Basic \xff\xfe"), ("X-Devpi-Auth", b"\xff\xfe")):
        assert s.api("GET", "/+api", headers={header: value}).status_code == 200
        r = requests.post(f"{s.url}/{index}/", timeout=30, headers={header: value},
                          files={"content": ("pkg-1.0.tar.gz", sdist)},
                          data={":action": "file_upload", "name": "pkg", "version": "1.0"})
        assert_refused(r, 401)
