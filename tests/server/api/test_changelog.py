"""Serials and the changelog: every write takes the next serial and says what changed."""
from __future__ import annotations

import requests
from srv_helpers import raw_upload, serial, unique
from support.dists import write_wheel


def test_every_write_takes_the_next_serial(engine_server, tmp_path):
    s = engine_server
    name = unique("ser")
    project = unique("ser-pkg")
    w = write_wheel(tmp_path, project, "1.0")
    steps = []

    def write(label, fn, *expected_kinds):
        before = serial(s)
        r = fn()
        assert r.status_code in (200, 201), (label, r.status_code, r.text)
        assert int(r.headers["X-Devpi-Serial"]) == before + 1, label
        assert serial(s) == before + 1, label
        entry = s.api("GET", f"/+changelog/{before + 1}").json()
        assert entry["type"] == "changelog" and entry["result"]["serial"] == before + 1
        kinds = [c["kind"] for c in entry["result"]["changes"]]
        for kind in expected_kinds:
            assert kind in kinds, (label, kinds)
        steps.append((label, entry["result"]))
        return entry["result"]

    write("create user", lambda: s.api("PUT", f"/{name}", json={"password": "pw"}), "user")
    auth = s.login(name, "pw")
    e = write("create index", lambda: s.api("PUT", f"/{name}/dev", json={}, auth=auth), "index")
    assert e["who"] == name and {"kind": "index", "index": f"{name}/dev", "op": "create"} in e["changes"]
    e = write("upload", lambda: raw_upload(s, f"{name}/dev", w.name, w.read_bytes(), (name, "pw"),
                                            name=project, version="1.0"), "release", "file")
    [add] = [c for c in e["changes"] if c["kind"] == "file"]
    assert add["op"] == "add" and add["project"] == project and add["version"] == "1.0"
    assert add["relpath"].endswith("/" + w.name)
    write("yank", lambda: s.api("POST", f"/{name}/dev/{project}/1.0/+yank", json={}, auth=auth), "yank")
    write("modify index", lambda: s.api("PATCH", f"/{name}/dev", json=["title=T"], auth=auth), "index")
    write("modify user", lambda: s.api("PATCH", f"/{name}", json={"email": "a@b.c"}, auth=auth), "user")
    e = write("delete version", lambda: s.api("DELETE", f"/{name}/dev/{project}/1.0", auth=auth), "release")
    assert {"kind": "project", "index": f"{name}/dev", "project": project, "op": "delete"} in e["changes"]
    write("delete index", lambda: s.api("DELETE", f"/{name}/dev", auth=auth), "index")
    # reads and refused writes take no serial
    at = serial(s)
    assert s.api("GET", "/").status_code == 200
    assert s.api("PUT", f"/{name}", json={"password": "pw"}).status_code == 409
    assert s.api("PATCH", f"/{name}", json={"title": "x"}).status_code == 403  # anonymous: as the original
    r = s.api("GET", "/+api")
    assert serial(s) == at and int(r.headers["X-Devpi-Serial"]) == at
    assert len(steps) == 8


def test_changelog_edges_and_status(engine_server):
    s = engine_server
    at = serial(s)
    r = s.api("GET", f"/+changelog/{at + 1}?timeout=0.2")
    assert r.status_code == 202 and "no change after serial" in r.json()["message"]
    r = s.api("GET", f"/+changelog/{at + 5}")
    assert r.status_code == 404 and "beyond" in r.json()["message"]
    assert s.api("GET", "/+changelog/0").json()["result"]["serial"] == 0
    status = s.api("GET", "/+status").json()
    assert status["type"] == "status"
    result = status["result"]
    assert result["serial"] == at and result["serverdir"] == str(s.serverdir.resolve())
    if s.storage:
        assert result["storage"].startswith("postgresql://") and result["storage"].endswith(
            s.storage.rsplit("@", 1)[1])
    else:
        assert result["storage"] == f"sqlite:///{s.serverdir.resolve() / 'devpi.sqlite'}"
    assert isinstance(result["uptime"], float) and result["uptime"] >= 0
    assert result["uuid"] and requests.get(s.url + "/+api", timeout=30).headers["X-Devpi-Uuid"] == result["uuid"]


def test_waiting_changelog_request_returns_at_the_commit(engine_server):
    """A replica-style long poll on the next serial is answered by the next write."""
    import threading

    s = engine_server
    at = serial(s)
    got = {}

    def poll():
        got["r"] = s.api("GET", f"/+changelog/{at + 1}?timeout=20")

    t = threading.Thread(target=poll)
    t.start()
    user = unique("poll")
    assert s.api("PUT", f"/{user}", json={"password": "pw"}).status_code == 201
    t.join(30)
    assert got["r"].status_code == 200
    assert got["r"].json()["result"]["changes"] == [{"kind": "user", "user": user, "op": "create"}]


def test_serial_survives_restart(module_servers, storage_url):
    s = module_servers(storage=storage_url)
    s.create_user(unique("r"), "pw")
    at = serial(s)
    s.restart()
    assert serial(s) == at
    s.api("PUT", f"/{unique('r')}", json={"password": "pw"})
    assert serial(s) == at + 1
