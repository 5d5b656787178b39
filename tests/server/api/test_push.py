"""Push between indexes and to an external repository: the rules a target keeps."""
from __future__ import annotations

import pytest
import requests
from srv_helpers import new_user, raw_upload, serial, sha256_file, simple_json, unique
from support.dists import wheel_bytes, write_wheel
from support.receiver import upload_receiver


def push(s, auth, source: str, name: str, **body) -> requests.Response:
    return s.api("PUSH", f"/{source}", json={"name": name, "version": "1.0", **body}, auth=auth)


@pytest.mark.parametrize("volatile", [False, True])
def test_a_file_of_the_same_name_is_the_same_file(engine_server, tmp_path, volatile):
    """Whatever its bytes: a non-volatile target refuses it (409), a volatile one replaces it,
    as for uploads. Before, the target got a second file of that name."""
    s = engine_server
    auth = new_user(s)
    s.create_index(auth, "dev")
    s.create_index(auth, "prod", volatile=volatile)
    creds = (auth[0], "pw")
    name = unique("pu-pkg")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    kept = write_wheel(tmp_path / "a", name, "1.0", summary="on prod first")
    other = write_wheel(tmp_path / "b", name, "1.0", summary="other bytes on dev")
    assert kept.name == other.name and kept.read_bytes() != other.read_bytes()
    for index, path in ((f"{auth[0]}/prod", kept), (f"{auth[0]}/dev", other)):
        r = raw_upload(s, index, path.name, path.read_bytes(), creds, name=name, version="1.0")
        assert r.status_code == 200, r.text
    for index, docs in ((f"{auth[0]}/prod", b"prod docs"), (f"{auth[0]}/dev", b"dev docs")):
        zipped = _doc_zip(tmp_path, docs)
        r = requests.post(f"{s.url}/{index}/", auth=creds, timeout=30, files={"content": ("d.zip", zipped)},
                          data={":action": "doc_upload", "name": name, "version": "1.0"})
        assert r.status_code == 200, r.text
    at = serial(s)
    r = push(s, auth, f"{auth[0]}/dev", name, targetindex=f"{auth[0]}/prod")
    files = simple_json(s, f"{auth[0]}/prod", name)["files"]
    links = s.api("GET", f"/{auth[0]}/prod/{name}/1.0").json()["result"]["+links"]
    docs = [lk for lk in links if lk["rel"] == "doczip"]
    if not volatile:
        assert r.status_code == 409 and "already exists in non-volatile index" in r.json()["message"], r.text
        assert serial(s) == at
        assert [f["hashes"]["sha256"] for f in files] == [sha256_file(kept)]
    else:
        assert r.status_code == 200, r.text
        assert [f["hashes"]["sha256"] for f in files] == [sha256_file(other)]
    assert len(docs) == 1


def _doc_zip(tmp_path, text: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", text)
    return buf.getvalue()


def test_a_push_to_the_index_it_is_on_is_refused(engine_server):
    s = engine_server
    auth = new_user(s)
    s.create_index(auth, "dev")
    name = unique("self-pkg")
    fn, data = wheel_bytes(name, "1.0")
    assert raw_upload(s, f"{auth[0]}/dev", fn, data, (auth[0], "pw"), name=name, version="1.0").status_code == 200
    r = requests.post(s.api("GET", f"/{auth[0]}/dev/{name}/1.0").json()["result"]["+links"][0]["href"],
                      json={"testenvs": {}}, timeout=30)
    assert r.status_code == 200, r.text
    at = serial(s)
    r = push(s, auth, f"{auth[0]}/dev", name, targetindex=f"{auth[0]}/dev")
    assert r.status_code == 400 and "push it to another index" in r.json()["message"], r.text
    assert serial(s) == at
    links = s.api("GET", f"/{auth[0]}/dev/{name}/1.0").json()["result"]["+links"]
    assert sorted(lk["rel"] for lk in links) == ["releasefile", "toxresult"]


@pytest.fixture
def remote():
    """An external repository that takes every upload."""
    with upload_receiver() as receiver:
        yield receiver


def test_test_gates_hold_for_external_repositories(engine_server, remote):
    s = engine_server
    url, got = remote.url, remote.got
    auth = new_user(s)
    s.create_index(auth, "gated", push_requires=["linux"])
    name = unique("ext-pkg")
    fn, data = wheel_bytes(name, "1.0")
    assert raw_upload(s, f"{auth[0]}/gated", fn, data, (auth[0], "pw"), name=name, version="1.0").status_code == 200
    r = push(s, auth, f"{auth[0]}/gated", name, posturl=url, username="u", password="p")
    assert r.status_code == 409 and "push_requires" in r.json()["message"], r.text
    assert got == []
    assert push(s, None, f"{auth[0]}/gated", name, posturl=url).status_code == 401
    # without the gate the same push goes out
    assert s.api("PATCH", f"/{auth[0]}/gated", json=["push_requires-=linux"], auth=auth).status_code == 200
    r = push(s, auth, f"{auth[0]}/gated", name, posturl=url, username="u", password="p")
    assert r.status_code == 200, r.text
    assert got and {u.path for u in got} == {"/legacy/"}


def test_doc_flags_as_a_command_line_spells_them(engine_server, tmp_path):
    s = engine_server
    auth = new_user(s)
    s.create_index(auth, "dev")
    name = unique("flag-pkg")
    fn, data = wheel_bytes(name, "1.0")
    creds = (auth[0], "pw")
    assert raw_upload(s, f"{auth[0]}/dev", fn, data, creds, name=name, version="1.0").status_code == 200
    r = requests.post(f"{s.url}/{auth[0]}/dev/", auth=creds, timeout=30,
                      files={"content": ("d.zip", _doc_zip(tmp_path, b"docs"))},
                      data={":action": "doc_upload", "name": name, "version": "1.0"})
    assert r.status_code == 200, r.text
    for target, flag, with_docs in (("t1", "false", True), ("t2", "true", False), ("t3", False, True)):
        s.create_index(auth, target)
        r = push(s, auth, f"{auth[0]}/dev", name, targetindex=f"{auth[0]}/{target}", no_docs=flag)
        assert r.status_code == 200, r.text
        rels = [lk["rel"] for lk in s.api("GET", f"/{auth[0]}/{target}/{name}/1.0").json()["result"]["+links"]]
        assert ("doczip" in rels) == with_docs, (flag, rels)


def test_a_doc_flag_that_leaves_nothing_to_push_is_an_error(engine_server, tmp_path):
    """--no-docs of a docs-only release made an empty release on the target; --only-docs of
    a release without docs answered 200 and pushed its metadata alone."""
    s = engine_server
    auth = new_user(s)
    s.create_index(auth, "dev")
    s.create_index(auth, "prod")
    creds = (auth[0], "pw")
    docs_only, files_only = unique("docs-only"), unique("files-only")
    r = requests.post(f"{s.url}/{auth[0]}/dev/", auth=creds, timeout=30,
                      files={"content": ("d.zip", _doc_zip(tmp_path, b"docs"))},
                      data={":action": "doc_upload", "name": docs_only, "version": "1.0"})
    assert r.status_code == 200, r.text
    fn, data = wheel_bytes(files_only, "1.0")
    assert raw_upload(s, f"{auth[0]}/dev", fn, data, creds, name=files_only, version="1.0").status_code == 200
    before = serial(s)
    r = push(s, auth, f"{auth[0]}/dev", docs_only, targetindex=f"{auth[0]}/prod", no_docs=True)
    assert r.status_code == 404 and "only documentation" in r.json()["message"], r.text
    r = push(s, auth, f"{auth[0]}/dev", files_only, targetindex=f"{auth[0]}/prod", only_docs=True)
    assert r.status_code == 404 and "no documentation" in r.json()["message"], r.text
    assert serial(s) == before
    assert s.api("GET", f"/{auth[0]}/prod/{docs_only}").status_code == 404
    assert s.api("GET", f"/{auth[0]}/prod/{files_only}").status_code == 404
    r = push(s, auth, f"{auth[0]}/dev", docs_only, targetindex=f"{auth[0]}/prod", only_docs=True)
    assert r.status_code == 200, r.text
    r = push(s, auth, f"{auth[0]}/dev", files_only, targetindex=f"{auth[0]}/prod", no_docs=True)
    assert r.status_code == 200, r.text
