"""Helpers shared by the mirror tests (fixtures are in conftest.py)."""
from __future__ import annotations

import hashlib
import sqlite3
import time

import requests
from support.pipinstall import installed, pip_install  # noqa: F401  (re-exported for the mirror tests)
from support.server import ServerProcess
from support.upstream import JSON_TYPE

JSON = {"Accept": JSON_TYPE}


def make_mirror(server: ServerProcess, auth, name: str, url: str, **config) -> str:
    """A further mirror index root/<name>; returns its simple URL."""
    server.create_index(auth, name, type="mirror", mirror_url=url, **config)
    return f"{server.url}/root/{name}/+simple/"


def page(server_or_url, path: str = "", **kw) -> requests.Response:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
    return requests.get(url + path, headers={**JSON, **kw.pop("headers", {})}, timeout=60, **kw)


def filenames(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return sorted(f["filename"] for f in resp.json()["files"])


def file_url(simple_project_url: str, resp: requests.Response, filename: str) -> str:
    for f in resp.json()["files"]:
        if f["filename"] == filename:
            return requests.compat.urljoin(simple_project_url, f["url"])
    raise KeyError(filename)


def blob_exists(server: ServerProcess, sha256: str) -> bool:
    return (server.serverdir / "blobs" / sha256[:2] / sha256).exists()


def blob_appears(server: ServerProcess, sha256: str, timeout: float = 5.0) -> bool:
    """The client gets its last byte once the hash checked; the blob is renamed into place
    (after its fsync) a moment later."""
    deadline = time.monotonic() + timeout
    while not blob_exists(server, sha256):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stored_rows(server: ServerProcess, table: str, filename: str | None = None) -> int:
    """Rows of a mirror cache table in the server's SQLite database (all, or one file's)."""
    query, args = f"SELECT count(*) FROM {table}", ()
    if filename is not None:
        query, args = query + " WHERE filename = ?", (filename,)
    with sqlite3.connect(f"file:{server.serverdir / 'devpi.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(query, args).fetchone()[0]


def wait_for_rows(server: ServerProcess, table: str, n: int, filename: str | None = None) -> None:
    """Cache writes land in the background: wait until at least n rows are there."""
    deadline = time.monotonic() + 10
    while stored_rows(server, table, filename) < n:
        assert time.monotonic() < deadline, f"{table}: fewer than {n} rows after 10 s"
        time.sleep(0.02)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
