"""Indexes: create, modify (dict and devpi's k=v list), bases, delete, list, validation, ACLs."""
from __future__ import annotations

import requests
from srv_helpers import new_user, unique
from support.dists import write_wheel

DEFAULT_STAGE = {"type": "stage", "bases": [], "volatile": True, "acl_toxresult_upload": [":ANONYMOUS:"],
                 "mirror_whitelist": [], "mirror_whitelist_inheritance": "intersection"}


def test_create_show_list_delete(engine_server):
    s = engine_server
    auth = new_user(s)
    r = s.api("PUT", f"/{auth[0]}/dev", json={}, auth=auth)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "indexconfig"
    result = r.json()["result"]
    # the devpi defaults (server extensions may add keys of their own)
    assert {k: result[k] for k in DEFAULT_STAGE} == DEFAULT_STAGE and result["acl_upload"] == [auth[0]]
    # string values as devpi-client sends them
    r = s.api("PUT", f"/{auth[0]}/prod", auth=auth,
              json={"bases": f"{auth[0]}/dev", "volatile": "False", "title": "Production",
                    "description": "release builds", "custom_data": {"k": 1}, "mirror_whitelist": "Foo_Bar,baz"})
    assert r.status_code == 200, r.text
    cfg = r.json()["result"]
    assert cfg["bases"] == [f"{auth[0]}/dev"] and cfg["volatile"] is False
    assert cfg["title"] == "Production" and cfg["custom_data"] == {"k": 1}
    assert cfg["mirror_whitelist"] == ["foo-bar", "baz"]

    shown = s.api("GET", f"/{auth[0]}/prod").json()
    assert shown["type"] == "indexconfig" and shown["result"]["projects"] == []
    assert "projects" not in s.api("GET", f"/{auth[0]}/prod?no_projects=").json()["result"]
    user = s.api("GET", f"/{auth[0]}").json()["result"]
    assert sorted(user["indexes"]) == ["dev", "prod"]
    assert s.api("GET", "/").json()["result"][auth[0]]["indexes"]["prod"]["title"] == "Production"

    r = s.api("PUT", f"/{auth[0]}/dev", json={}, auth=auth)
    assert r.status_code == 409 and "exists" in r.json()["message"]
    # a non-volatile index needs force; a base in use goes, and leaves the bases of its users
    r = s.api("DELETE", f"/{auth[0]}/prod", auth=auth)
    assert r.status_code == 403 and "non-volatile" in r.json()["message"]
    assert s.api("DELETE", f"/{auth[0]}/dev", auth=auth).status_code == 201
    assert s.api("GET", f"/{auth[0]}/prod").json()["result"]["bases"] == []
    r = s.api("DELETE", f"/{auth[0]}/prod?force=", auth=auth)
    assert r.status_code == 201 and r.json()["message"] == f"index {auth[0]}/prod deleted"
    r = s.api("GET", f"/{auth[0]}/dev")
    assert r.status_code == 404 and "could not be found" in r.json()["message"]
    assert s.api("GET", f"/{auth[0]}").json()["result"]["indexes"] == {}


def test_modify_list_and_dict_forms(engine_server):
    s = engine_server
    auth = new_user(s)
    u = auth[0]
    for name in ("a", "b", "c"):
        s.create_index(auth, name)

    def patch(body):
        return s.api("PATCH", f"/{u}/c", json=body, auth=auth)

    r = patch([f"bases={u}/a", "title=Test index", "mirror_whitelist+=foo", "mirror_whitelist+=Bar"])
    assert r.status_code == 200, r.text
    cfg = r.json()["result"]
    assert cfg["bases"] == [f"{u}/a"] and cfg["title"] == "Test index"
    assert cfg["mirror_whitelist"] == ["foo", "bar"]
    # add a base, remove a base
    cfg = patch([f"bases+={u}/b"]).json()["result"]
    assert cfg["bases"] == [f"{u}/a", f"{u}/b"]
    cfg = patch([f"bases-={u}/a"]).json()["result"]
    assert cfg["bases"] == [f"{u}/b"]
    r = patch([f"bases-={u}/a"])
    assert r.status_code == 400 and "doesn't have value" in r.json()["message"]
    # k-= drops a key; defaults cannot be dropped
    cfg = patch(["title-="]).json()["result"]
    assert "title" not in cfg
    r = patch(["volatile-="])
    assert r.status_code == 400 and r.json()["message"] == "Default values can't be removed."
    cfg = patch(["volatile=False", "acl_upload+=:authenticated:"]).json()["result"]
    assert cfg["volatile"] is False and cfg["acl_upload"] == [u, ":AUTHENTICATED:"]
    # dict form merges; the {"type": "indexconfig", "result": ...} wrapper is accepted
    cfg = patch({"description": "merged"}).json()["result"]
    assert cfg["description"] == "merged" and cfg["volatile"] is False
    cfg = patch({"type": "indexconfig", "result": {"bases": [], "projects": ["ignored"]}}).json()["result"]
    assert cfg["bases"] == [] and cfg["description"] == "merged"
    r = s.api("PATCH", f"/{u}/c?error_on_noop", json={"description": "merged"}, auth=auth)
    assert r.status_code == 400 and "no changes" in r.json()["message"]
    assert s.api("GET", f"/{u}/c?no_projects=").json()["result"] == cfg


def test_validation_400(engine_server):
    s = engine_server
    auth = new_user(s)
    u = auth[0]
    s.create_index(auth, "x")
    s.create_index(auth, "y", bases=f"{u}/x")
    cases = [
        ("PUT", f"/{u}/z", {"bases": "nobody/nothing"}, "base index 'nobody/nothing' does not exist"),
        ("PUT", f"/{u}/z", {"foo": "bar"}, "indexconfig got unexpected keyword arguments: foo='bar'"),
        ("PUT", f"/{u}/z", {"type": "weird"}, "unknown index type"),
        ("PUT", f"/{u}/z", {"volatile": "maybe"}, "expected a boolean"),
        ("PUT", f"/{u}/z", {"bases": "notaname"}, "not in the form user/index"),
        ("PUT", f"/{u}/z", ["not", "a", "dict"], "must be a JSON object"),
        ("PATCH", f"/{u}/x", [f"bases={u}/y"], "cycle"),
        ("PATCH", f"/{u}/x", [f"bases={u}/x"], "cycle"),
        ("PATCH", f"/{u}/x", ["nokey=1"], "unexpected keyword arguments: nokey"),
        ("PATCH", f"/{u}/x", ["title+=1"], "is not a list"),
        ("PATCH", f"/{u}/x", ["noequals"], "key=value"),
        ("PATCH", f"/{u}/x", {"type": "mirror"}, "can't be changed"),
        ("PATCH", f"/{u}/x", "a string", "expected a JSON object or a list"),
    ]
    for method, path, body, message in cases:
        r = s.api(method, path, json=body, auth=auth)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert message in r.json()["message"], (body, r.json())
    r = s.api("PUT", f"/{u}/bad%20name", json={}, auth=auth)
    assert r.status_code == 400 and "invalid index name" in r.json()["message"]
    assert s.api("GET", f"/{u}/z").status_code == 404
    assert s.api("GET", f"/{u}/x").json()["result"]["bases"] == []


def test_only_owner_and_root_change_an_index(engine_server):
    s = engine_server
    owner, other = new_user(s), new_user(s)
    s.create_index(owner, "dev")
    ix = f"/{owner[0]}/dev"
    assert s.api("PATCH", ix, json=["title=x"]).status_code == 401
    r = s.api("PATCH", ix, json=["title=x"], auth=other)
    assert r.status_code == 403 and "no permission to modify index" in r.json()["message"]
    r = s.api("DELETE", ix, auth=other)
    assert r.status_code == 403
    r = s.api("PUT", f"/{owner[0]}/other", json={}, auth=other)
    assert r.status_code == 403 and "no permission to create index" in r.json()["message"]
    root = s.login("root", "root")
    assert s.api("PATCH", ix, json=["title=by root"], auth=root).status_code == 200
    assert s.api("PUT", f"/{owner[0]}/byroot", json={}, auth=root).status_code == 200
    assert s.api("GET", ix).json()["result"]["title"] == "by root"
    assert s.api("DELETE", ix, auth=root).status_code == 201


def _upload_ok(s, index, wheel, auth) -> int:
    return s.upload(index, wheel, auth).status_code


def test_acl_upload(engine_server, tmp_path):
    s = engine_server
    owner, other = new_user(s, "pw"), new_user(s, "pw")
    u = owner[0]
    s.create_index(owner, "dev")
    project = unique("acl-pkg")
    w1 = write_wheel(tmp_path, project, "1.0")
    w2 = write_wheel(tmp_path, project, "2.0")
    w3 = write_wheel(tmp_path, project, "3.0")
    w4 = write_wheel(tmp_path, project, "4.0")
    # default: only the owner
    r = requests.post(f"{s.url}/{u}/dev/", data={":action": "file_upload", "name": project, "version": "1.0"},
                      files={"content": (w1.name, w1.read_bytes())}, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="pypi"'
    r = s.upload(f"{u}/dev", w1, (other[0], "pw"))
    assert r.status_code == 403 and "no permission to submit" in r.json()["message"]
    assert _upload_ok(s, f"{u}/dev", w1, (u, "pw")) == 200
    # a named user
    s.api("PATCH", f"/{u}/dev", json=[f"acl_upload+={other[0]}"], auth=owner)
    assert _upload_ok(s, f"{u}/dev", w2, (other[0], "pw")) == 200
    # :AUTHENTICATED: lets any logged-in user upload, but not anonymous ones
    third = new_user(s, "pw")
    s.api("PATCH", f"/{u}/dev", json=["acl_upload=:authenticated:"], auth=owner)
    assert _upload_ok(s, f"{u}/dev", w3, (third[0], "pw")) == 200
    assert _upload_ok(s, f"{u}/dev", w4, (third[0], "wrong")) == 401
    # :ANONYMOUS: lets anyone upload
    s.api("PATCH", f"/{u}/dev", json=["acl_upload=:ANONYMOUS:"], auth=owner)
    r = requests.post(f"{s.url}/{u}/dev/", data={":action": "file_upload", "name": project, "version": "4.0"},
                      files={"content": (w4.name, w4.read_bytes())}, timeout=30)
    assert r.status_code == 200, r.text
    versions = s.api("GET", f"/{u}/dev/{project}").json()["result"]
    assert sorted(versions) == ["1.0", "2.0", "3.0", "4.0"]
    assert versions["4.0"]["+links"][0]["log"][0]["who"] is None
    assert versions["2.0"]["+links"][0]["log"][0]["who"] == other[0]
