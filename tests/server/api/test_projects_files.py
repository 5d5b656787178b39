"""Project and version JSON in devpi's shape, deletes, and files under +f/ (caching, Range)."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import requests
from srv_helpers import new_stage, raw_upload, serial, unique
from support.dists import write_sdist, write_wheel


def put(s, index, auth, path, name, version):
    r = raw_upload(s, index, path.name, path.read_bytes(), (auth[0], "pw"), name=name, version=version)
    assert r.status_code == 200, r.text


def uploaded_wheel(s, tmp_path, prefix: str, repeat: int) -> tuple[bytes, str, str]:
    """A wheel of about 3 * repeat bytes uploaded to a new stage: (its bytes, URL, sha256)."""
    auth, index = new_stage(s)
    name = unique(prefix)
    w = write_wheel(tmp_path, name, "1.0", module_body="X = %r\n" % ("abc" * repeat))
    put(s, index, auth, w, name, "1.0")
    [link] = s.api("GET", f"/{index}/{name}/1.0").json()["result"]["+links"]
    return w.read_bytes(), link["href"], link["hashes"]["sha256"]


def test_project_and_version_json(engine_server, tmp_path):
    s = engine_server
    auth, base = new_stage(s)
    u = auth[0]
    s.create_index(auth, "child", bases=base)
    child = f"{u}/child"
    name = unique("Json_Pkg")
    norm = name.lower().replace("_", "-")
    w1 = write_wheel(tmp_path, name, "1.0", summary="one")
    sd1 = write_sdist(tmp_path, name, "1.0", summary="one")
    put(s, base, auth, w1, name, "1.0")
    put(s, base, auth, sd1, name, "1.0")
    put(s, child, auth, w1, name, "1.0")  # same version on both: child's shadows base's
    w2 = write_wheel(tmp_path, name, "2.0")
    put(s, child, auth, w2, name, "2.0")

    r = s.api("GET", f"/{child}/{norm}")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert doc["type"] == "projectconfig"
    assert sorted(doc["result"]) == ["1.0", "2.0"]
    v1 = doc["result"]["1.0"]
    assert v1["name"] == name and v1["version"] == "1.0" and v1["summary"] == "one"
    [link] = v1["+links"]
    assert link["rel"] == "releasefile"
    h = hashlib.sha256(w1.read_bytes()).hexdigest()
    assert link["href"] == f"{s.url}/{child}/+f/{h[:3]}/{h[3:16]}/{w1.name}"
    assert link["hash_spec"] == f"sha256={h}" and link["hashes"] == {"sha256": h}
    [entry] = link["log"]
    assert entry["what"] == "upload" and entry["who"] == u and entry["dst"] == child
    assert len(entry["when"]) == 6
    [shadow] = v1["+shadowing"]
    assert sorted(x["href"].rsplit("/", 1)[1] for x in shadow["+links"]) == sorted([w1.name, sd1.name])
    assert all(x["href"].startswith(f"{s.url}/{base}/+f/") for x in shadow["+links"])

    own = s.api("GET", f"/{child}/{norm}?ignore_bases").json()["result"]
    assert "+shadowing" not in own["1.0"]
    assert s.api("GET", f"/{base}/{norm}").json()["result"].keys() == {"1.0"}

    # trailing slash or not; normalised name redirect
    for path in (f"/{child}/{norm}/", f"/{child}/{norm}/2.0", f"/{child}/{norm}/2.0/"):
        assert s.api("GET", path).status_code == 200, path
    assert s.api("GET", f"/{child}/{norm}/2.0").json()["type"] == "versiondata"
    r = s.api("GET", f"/{child}/{name}", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/{child}/{norm}")
    r = s.api("GET", f"/{child}/{norm}/9.9")
    assert r.status_code == 404 and r.json()["message"] == f"The version 9.9 of project {norm} does not exist."
    r = s.api("GET", f"/{child}/no-such-project")
    assert r.status_code == 404 and r.json()["message"] == "no project 'no-such-project'"
    # projects of the index itself (devpi list)
    assert s.api("GET", f"/{child}").json()["result"]["projects"] == [norm]


def test_deletes(engine_server, tmp_path):
    s = engine_server
    auth, index = new_stage(s)
    other = s.create_user(unique("other"), "pw")
    name = unique("del-pkg")
    files = {}
    for v in ("1.0", "2.0", "3.0"):
        files[v] = [write_wheel(tmp_path, name, v), write_sdist(tmp_path, name, v)]
        for p in files[v]:
            put(s, index, auth, p, name, v)
    links = s.api("GET", f"/{index}/{name}/1.0").json()["result"]["+links"]
    paths = [x["href"].split(s.url, 1)[1] for x in links]
    assert s.api("DELETE", paths[0]).status_code == 401
    assert s.api("DELETE", paths[0], auth=other).status_code == 403
    r = s.api("DELETE", paths[0], auth=auth)
    assert r.status_code == 200 and r.json()["message"] == f"package '{paths[0][1:]}' deleted"
    assert requests.get(s.url + paths[0], timeout=30).status_code == 410
    assert s.api("DELETE", paths[0], auth=auth).status_code == 410
    assert requests.get(s.url + paths[1], timeout=30).status_code == 200
    # the last file takes its version with it
    assert s.api("DELETE", paths[1], auth=auth).status_code == 200
    assert sorted(s.api("GET", f"/{index}/{name}").json()["result"]) == ["2.0", "3.0"]
    # a version
    r = s.api("DELETE", f"/{index}/{name}/2.0", auth=auth)
    assert r.status_code == 200, r.text
    assert s.api("DELETE", f"/{index}/{name}/2.0", auth=auth).status_code == 404
    assert sorted(s.api("GET", f"/{index}/{name}").json()["result"]) == ["3.0"]
    # the whole project
    r = s.api("DELETE", f"/{index}/{name}", auth=auth)
    assert r.status_code == 200 and r.json()["message"] == f"project {name} deleted from stage {index}"
    assert s.api("GET", f"/{index}/{name}").status_code == 404
    assert s.api("GET", f"/{index}").json()["result"]["projects"] == []
    assert s.api("DELETE", f"/{index}/{name}", auth=auth).status_code == 404

    # non-volatile: refused, then allowed with ?force
    s.api("PATCH", f"/{index}", json=["volatile=False"], auth=auth)
    w = write_wheel(tmp_path, name, "4.0")
    put(s, index, auth, w, name, "4.0")
    w5 = write_wheel(tmp_path, name, "5.0")
    put(s, index, auth, w5, name, "5.0")
    assert s.api("DELETE", f"/{index}/{name}/4.0", auth=auth).status_code == 403
    assert s.api("DELETE", f"/{index}/{name}/4.0?force=", auth=auth).status_code == 200
    assert s.api("DELETE", f"/{index}/{name}?force=", auth=auth).status_code == 200
    assert s.api("GET", f"/{index}/{name}").status_code == 404


def test_files_headers_range_and_caching(engine_server, tmp_path):
    s = engine_server
    data, url, sha = uploaded_wheel(s, tmp_path, "file-pkg", 5000)
    assert sha == hashlib.sha256(data).hexdigest()

    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"] == f'"{sha}"'
    assert r.headers["Cache-Control"] == "max-age=365000000, immutable, public"
    assert r.headers["Accept-Ranges"] == "bytes" and "Last-Modified" in r.headers
    assert r.headers["Content-Type"] == "application/octet-stream"
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == str(len(data))
    assert requests.get(url, headers={"If-None-Match": f'"{sha}"'}, timeout=30).status_code == 304

    r = requests.get(url, headers={"Range": "bytes=10-99"}, timeout=30)
    assert r.status_code == 206 and r.content == data[10:100]
    assert r.headers["Content-Range"] == f"bytes 10-99/{len(data)}" and r.headers["Content-Length"] == "90"
    r = requests.get(url, headers={"Range": "bytes=-50"}, timeout=30)
    assert r.status_code == 206 and r.content == data[-50:]
    r = requests.get(url, headers={"Range": "bytes=100-"}, timeout=30)
    assert r.status_code == 206 and r.content == data[100:]
    r = requests.get(url, headers={"Range": f"bytes={len(data) + 5}-"}, timeout=30)
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"
    r = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}, timeout=30)
    assert r.status_code == 200 and r.content == data  # If-Range mismatch: the whole file
    for invalid in ("bytes=9-0", "bytes=5--3", "bytes=+1-5", "bytes=1_0-20", "bytes=-"):
        # not a valid range (RFC 9110): ignored, the whole file
        r = requests.get(url, headers={"Range": invalid}, timeout=30)
        assert r.status_code == 200 and r.content == data, invalid
        head = requests.head(url, headers={"Range": invalid}, timeout=30)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data)), invalid

    # pip percent-encodes the "+" of "+f"
    r = requests.get(url.replace("/+f/", "/%2Bf/"), timeout=30)
    assert r.status_code == 200 and r.content == data
    # JSON metadata of a file
    meta = requests.get(url, headers={"Accept": "application/json"}, timeout=30).json()
    assert meta["type"] == "releasefilemeta" and meta["result"]["hashes"] == {"sha256": sha}
    assert meta["result"]["version"] == "1.0" and meta["result"]["size"] == len(data)
    missing = url.replace(sha[3:16], "0" * 13)
    r = requests.get(missing, timeout=30)
    assert r.status_code == 404 and r.json()["message"] == "no such file"
    at = serial(s)
    assert requests.get(url, timeout=30).headers["X-Devpi-Serial"] == str(at)


def _complete_body(url: str, **kw) -> bytes | None:
    """The body if it arrived whole; None if the server refused it or cut the connection
    before the last byte."""
    try:
        r = requests.get(url, timeout=30, **kw)
    except requests.exceptions.RequestException:
        return None
    if r.status_code >= 300 or len(r.content) < int(r.headers.get("Content-Length", "0")):
        return None
    return r.content


@pytest.mark.parametrize("repeat", [50_000, 200_000])  # read at once, or sent from the file
def test_a_blob_changed_on_disk_is_never_served(server, tmp_path, repeat):
    """Served (and so hashed) moments ago, then changed in place with its size kept: the
    server hashes again, cuts the transfer off before the last byte, then refuses it."""
    s = server
    data, url, sha = uploaded_wheel(s, tmp_path, "rot-pkg", repeat)
    assert requests.get(url, timeout=30).content == data
    assert requests.get(url, headers={"Range": "bytes=-100"}, timeout=30).content == data[-100:]

    blob = s.serverdir / "blobs" / sha[:2] / sha
    with open(blob, "r+b") as f:  # one byte flipped, size and name unchanged
        f.seek(len(data) // 2)
        byte = f.read(1)
        f.seek(len(data) // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert _complete_body(url, headers={"Range": "bytes=-100"}) is None
    r = requests.get(url, timeout=30)
    assert r.status_code == 500 and "corrupt" in r.json()["message"]
    assert "does not match its hash" in s.log_text()


@pytest.mark.parametrize("repeat", [50_000, 300_000])  # a 150 KB wheel read at once, a 900 KB one sent from the file
def test_serving_files_leaves_no_file_open(server, tmp_path, repeat):
    """A checked file is read at once (small) or handed to the WSGI server to send from the
    file itself (large): every way a response can end (whole, range, HEAD, 304, client
    gone mid-body) closes it."""
    s = server
    data, url, sha = uploaded_wheel(s, tmp_path, "fd-pkg", repeat)
    fds = Path(f"/proc/{s.proc.pid}/fd")

    def open_files() -> int:
        return sum(1 for fd in fds.iterdir() if fd.resolve().name == sha)

    assert requests.get(url, timeout=30).content == data
    for _ in range(20):
        requests.get(url, timeout=30)
        requests.get(url, headers={"Range": "bytes=-100"}, timeout=30)
        requests.head(url, timeout=30)
        requests.get(url, headers={"If-None-Match": f'"{sha}"'}, timeout=30)
        with requests.get(url, stream=True, timeout=30) as r:  # hang up after the first piece
            next(r.iter_content(1024))
    deadline = time.monotonic() + 10
    while open_files() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_files() == 0
