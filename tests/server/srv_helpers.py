"""Small helpers for the server tests (names, users, stages, raw requests)."""
from __future__ import annotations

import hashlib
import itertools
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
