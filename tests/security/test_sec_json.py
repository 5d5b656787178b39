"""Finding 17 (JSON part): hostile JSON bodies.

The attacker sends JSON nested thousands of levels deep (``[[[[...]]]]``),
which made the parser raise RecursionError: a 500 on every JSON-taking
endpoint, anonymous ones (``/+login``, user creation, tox results) included.
Nesting a little less deep got stored and later broke whoever served it back.
Every JSON body is now capped in size (10 MiB, 32 MiB for tox reports: 413)
and in depth (64 levels: 400 with a JSON message), before anything is stored.
"""
from __future__ import annotations

import uuid

import pytest
import requests
from support.dists import write_sdist
from support.server import ServerProcess

DEPTH_LIMIT = 64


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request, sec_servers) -> ServerProcess:
    storage = request.getfixturevalue("pg_cluster").new_database() if request.param == "postgresql" else None
    return sec_servers(storage=storage)


@pytest.fixture(scope="module")
def world(srv, tmp_path_factory):
    """A user with an index holding one release file, to aim every JSON endpoint at."""
    name = f"j{uuid.uuid4().hex[:8]}"
    auth = srv.create_user(name, "pw")
    srv.create_index(auth, "dev")
    path = write_sdist(tmp_path_factory.mktemp("dists"), "jsonpkg", "1.0")
    assert srv.upload(f"{name}/dev", path, auth).status_code == 200
    href = srv.api("GET", f"/{name}/dev/jsonpkg").json()["result"]["1.0"]["+links"][0]["href"]
    return auth, href[len(srv.url):]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def in_custom_data(depth: int) -> bytes:
    return b'{"password": "pw", "custom_data": ' + nested(depth) + b"}"


def endpoints(world) -> list[tuple[str, str, bool]]:
    (user, _), file_path = world
    return [("POST", "/+login", False), ("PUT", f"/n{uuid.uuid4().hex[:8]}", False),
            ("PATCH", f"/{user}", True), ("PUT", f"/{user}/ix{uuid.uuid4().hex[:6]}", True),
            ("PATCH", f"/{user}/dev", True), ("PUSH", f"/{user}/dev", True),
            ("POST", f"/{user}/dev/jsonpkg/1.0/+yank", True), ("POST", file_path, False),
            ("POST", f"/{user}/dev/+testruns", False)]


def send(srv, world, method: str, path: str, with_auth: bool, body: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if with_auth:
        import base64

        auth = world[0]
        headers["X-Devpi-Auth"] = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return requests.request(method, srv.url + path, data=body, headers=headers, timeout=60)


def test_json_nested_5000_deep_is_a_400_everywhere(srv, world):
    """No endpoint answers 500 to [[[[...]]]] 5,000 levels deep; each says why, as JSON."""
    for method, path, with_auth in endpoints(world):
        r = send(srv, world, method, path, with_auth, nested(5000))
        assert r.status_code == 400, (method, path, r.status_code, r.text[:300])
        assert "nested deeper than" in r.json()["message"], (method, path, r.text[:300])


def test_json_deeper_than_the_limit_is_refused_before_it_is_stored(srv, world):
    """65 levels inside custom_data: under the parser's own limit, over ours; nothing stored."""
    auth, _ = world
    name = f"deep{uuid.uuid4().hex[:8]}"
    r = send(srv, world, "PUT", f"/{name}", False, in_custom_data(DEPTH_LIMIT))
    assert r.status_code == 400, r.text
    assert srv.api("GET", f"/{name}").status_code == 404
    r = send(srv, world, "PATCH", f"/{auth[0]}/dev", True, b'{"custom_data": ' + nested(DEPTH_LIMIT + 5) + b"}")
    assert r.status_code == 400, r.text
    assert "custom_data" not in srv.api("GET", f"/{auth[0]}/dev").json()["result"]


def test_reasonable_nesting_still_works(srv):
    """custom_data nested a few levels is what clients send: it round-trips."""
    name = f"ok{uuid.uuid4().hex[:8]}"
    data = {"a": [{"b": [1, {"c": [[2]]}]}]}
    r = srv.api("PUT", f"/{name}", json={"password": "pw", "custom_data": data})
    assert r.status_code == 201, r.text
    assert srv.api("GET", f"/{name}").json()["result"]["custom_data"] == data
    r = requests.put(f"{srv.url}/{name}x", data=in_custom_data(DEPTH_LIMIT - 2),
                     headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 201, r.text


def test_json_body_over_the_size_cap_is_413(srv, world):
    """11 MiB of JSON to an anonymous endpoint: refused from its Content-Length."""
    body = b'{"password": "pw", "description": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    r = send(srv, world, "PUT", f"/big{uuid.uuid4().hex[:8]}", False, body)
    assert r.status_code == 413, r.text[:300]
    assert "too large" in r.json()["message"]


@pytest.mark.parametrize("reason", [{"a": 1}, ["x"], 5, "x" * 1001, "two\nlines", "bell\x07"])
def test_a_yank_reason_is_one_short_line_of_text(srv, world, reason):
    import json

    (user, _), _ = world
    r = send(srv, world, "POST", f"/{user}/dev/jsonpkg/1.0/+yank", True, json.dumps({"reason": reason}).encode())
    assert r.status_code == 400 and "reason must be" in r.json()["message"], r.text[:300]
    page = srv.api("GET", f"/{user}/dev/jsonpkg").json()["result"]["1.0"]["+links"][0]
    assert "yanked" not in page  # nothing was stored
