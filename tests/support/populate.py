"""A server filled through its HTTP API with what pages and replicas depend on (shared by
the export/import and the replication tests)."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import requests
from support.dists import sdist_bytes, wheel_bytes
from support.server import ServerProcess

HOST = {"Host": "devpi.example"}  # absolute URLs in the JSON API come out the same on both servers
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def upload(s: ServerProcess, index: str, filename: str, data: bytes, auth, **form) -> requests.Response:
    form = {":action": "file_upload", "protocol_version": "1", **form}
    return requests.post(f"{s.url}/{index}/", data=form, files={"content": (filename, data)}, auth=auth, timeout=60)


def upload_wheel(s: ServerProcess, index: str, name: str, version: str, auth, **kw) -> tuple[str, str]:
    """Upload a wheel; returns (filename, sha256)."""
    fn, data = wheel_bytes(name, version, **kw)
    r = upload(s, index, fn, data, auth, name=name, version=version)
    assert r.status_code == 200, r.text
    return fn, hashlib.sha256(data).hexdigest()


def get(s: ServerProcess, path: str, accept: str = "application/json") -> requests.Response:
    return requests.get(s.url + path, headers={"Accept": accept, **HOST}, timeout=60)


def populate(s: ServerProcess, tmp: Path) -> dict:
    """A stage with what pages depend on: wheels, an sdist, docs, a test result, a yank, a
    deleted file, a token, and an index inheriting from it."""
    auth = s.create_user("alice", "secret-pw", email="alice@example.org")
    s.create_index(auth, "dev")
    s.create_index(auth, "merged", bases=["alice/dev"])
    files = {}
    for v in ("1.0", "1.1", "2.0"):
        files[v] = upload_wheel(s, "alice/dev", "pkg-a", v, auth, module_body=f"VERSION = {v!r}\n")
    fn, data = sdist_bytes("pkg-a", "1.0")
    assert upload(s, "alice/dev", fn, data, auth, name="pkg-a", version="1.0").status_code == 200
    upload_wheel(s, "alice/dev", "other-lib", "0.1", auth, requires_python=">=3.8")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", "<h1>pkg-a docs</h1>")
    r = requests.post(f"{s.url}/alice/dev/", data={":action": "doc_upload", "name": "pkg-a", "version": "1.0"},
                      files={"content": ("pkg-a-1.0.doc.zip", buf.getvalue())}, auth=auth, timeout=60)
    assert r.status_code == 200, r.text
    links = get(s, "/alice/dev/+simple/pkg-a/", SIMPLE_JSON).json()["files"]
    wheel_10 = next(f for f in links if f["filename"] == files["1.0"][0])
    wheel_url = requests.compat.urljoin(f"{s.url}/alice/dev/+simple/pkg-a/", wheel_10["url"].split("#")[0])
    r = requests.post(wheel_url, json={"reportversion": "1", "host": "ci", "platform": "linux",
                                       "testenvs": {"py312": {"test": [{"retcode": 0}]}}}, auth=auth, timeout=60)
    assert r.status_code == 200, r.text
    r = s.api("POST", "/alice/dev/pkg-a/1.1/+yank", json={"reason": "broken"}, auth=auth)
    assert r.status_code == 200, r.text
    wheel_20 = next(f for f in links if f["filename"] == files["2.0"][0])
    r = requests.delete(requests.compat.urljoin(f"{s.url}/alice/dev/+simple/pkg-a/", wheel_20["url"].split("#")[0]),
                        auth=auth, timeout=60)
    assert r.status_code == 200, r.text
    r = s.api("POST", "/alice/+token-create", json={"allowed": ["upload"]}, auth=auth)
    assert r.status_code == 200, r.text
    return {"auth": auth, "token": r.json()["result"]["token"], "wheel_10": files["1.0"]}
