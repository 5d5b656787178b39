"""Small helpers for the server tests (names, users, stages, raw requests)."""
from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests
from support.server import ServerProcess

_names = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test in the session uses (users, indexes, projects)."""
    return f"{prefix}{next(_names)}x{uuid.uuid4().hex[:4]}"


def new_user(s: ServerProcess, password: str = "pw", prefix: str = "u") -> tuple[str, str]:
    """Create a user with a unique name; returns (name, token)."""
    return s.create_user(unique(prefix), password)


def new_stage(s: ServerProcess, password: str = "pw", **config) -> tuple[tuple[str, str], str]:
    """A fresh user with one stage index; returns (auth, "user/index")."""
    auth = new_user(s, password)
    s.create_index(auth, "dev", **config)
    return auth, f"{auth[0]}/dev"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def simple_json(s: ServerProcess, index: str, project: str) -> dict:
    r = requests.get(f"{s.url}/{index}/+simple/{project}/",
                     headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def serial(s: ServerProcess) -> int:
    return s.api("GET", "/+status").json()["result"]["serial"]


def projects_of(s: ServerProcess, index: str) -> list[str]:
    r = s.api("GET", f"/{index}")
    assert r.status_code == 200, r.text
    return r.json()["result"]["projects"]


def twine_upload(s: ServerProcess, index: str, user: str, password: str, files: list[Path],
                 *extra: str) -> subprocess.CompletedProcess:
    """The real twine CLI, as a user runs it (one POST per file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINE_")}
    cmd = [sys.executable, "-m", "twine", "upload", "--repository-url", f"{s.url}/{index}/", "-u", user,
           "-p", password, "--non-interactive", "--disable-progress-bar", *extra, *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def raw_upload(s: ServerProcess, index: str, filename: str, data: bytes, auth: tuple[str, str] | None,
               **fields: str) -> requests.Response:
    """A legacy-API upload with any form fields and file name (for what twine refuses to send)."""
    form = {":action": "file_upload", "protocol_version": "1", **fields}
    return requests.post(f"{s.url}/{index}/", data=form, files={"content": (filename, data)}, auth=auth,
                         timeout=60)
