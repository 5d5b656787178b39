"""Finding 10: non-volatile is not immutable.

A member of ``acl_upload`` who is not the owner of a non-volatile index ran
``DELETE /vic/rel/relpkg/1.0?force`` (200) and then uploaded different bytes
under the released file name (200): everyone who pinned the old hash broke,
everyone else got the new bytes. ``:action=submit`` rewrote a release's
summary without force. On a non-volatile index what was released stays:
files keep their bytes (409; identical bytes are a no-op 200 as the original
devpi), releases, projects and files are deleted only by the owner or root
(even with force), and a registered release's metadata is not rewritten
(submit that would change a value: 409, as for files).
"""
from __future__ import annotations

import io
import uuid
import zipfile

import pytest
import requests
from support.dists import sdist_bytes
from support.server import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request, sec_servers) -> ServerProcess:
    storage = request.getfixturevalue("pg_cluster").new_database() if request.param == "postgresql" else None
    return sec_servers(storage=storage)


@pytest.fixture
def rel(srv):
    """vic/rel: non-volatile, acl_upload vic and mem; relpkg 1.0 released by vic."""
    vic = srv.create_user(f"vic{uuid.uuid4().hex[:8]}", "pw")
    mem = srv.create_user(f"mem{uuid.uuid4().hex[:8]}", "pw")
    srv.create_index(vic, "rel", volatile=False, acl_upload=f"{vic[0]},{mem[0]}")
    filename, data = sdist_bytes("relpkg", "1.0", summary="the real one")
    assert upload(srv, vic, f"{vic[0]}/rel", filename, data).status_code == 200
    return vic, mem, f"{vic[0]}/rel", filename, data


def upload(srv, auth, index: str, filename: str, data: bytes, action: str = "file_upload",
           **fields) -> requests.Response:
    form = {":action": action, "protocol_version": "1", "name": "relpkg", "version": "1.0", **fields}
    return requests.post(f"{srv.url}/{index}/", data=form, files={"content": (filename, data)},
                         auth=auth, timeout=60)


def other_bytes(summary: str = "evil") -> bytes:
    _, data = sdist_bytes("relpkg", "1.0", summary=summary, extra_files={"relpkg/evil.py": "import os\n"})
    return data


def links(srv, index: str) -> list[dict]:
    return srv.api("GET", f"/{index}/relpkg/1.0").json()["result"]["+links"]


def test_member_cannot_delete_release_project_or_file_even_with_force(srv, rel):
    vic, mem, index, filename, data = rel
    [link] = links(srv, index)
    file_path = link["href"][len(srv.url):]
    for path in (f"/{index}/relpkg/1.0?force=", f"/{index}/relpkg?force=", f"{file_path}?force="):
        r = srv.api("DELETE", path, auth=mem)
        assert r.status_code == 403, (path, r.text)
        assert "owner" in r.json()["message"]
    assert requests.get(link["href"], timeout=30).content == data
    # the owner still can (with force), as the original devpi
    assert srv.api("DELETE", f"/{index}/relpkg/1.0", auth=vic).status_code == 403
    assert srv.api("DELETE", f"/{index}/relpkg/1.0?force=", auth=vic).status_code == 200


def test_deletes_without_force_keep_the_original_devpi_texts(srv, rel):
    """Even the owner needs force; the 403 says so in the original devpi's words (one check,
    nonvolatile.check_delete, for projects, versions and files), and nothing is deleted."""
    vic, mem, index, filename, data = rel
    [link] = links(srv, index)
    expected = {f"/{index}/relpkg": f"project relpkg is on non-volatile index {index}",
                f"/{index}/relpkg/1.0": f"cannot delete version on non-volatile index {index}",
                link["href"][len(srv.url):]: f"cannot delete file on non-volatile index {index}"}
    for path, message in expected.items():
        for who in (vic, mem):
            r = srv.api("DELETE", path, auth=who)
            assert r.status_code == 403 and r.json()["message"] == message, (path, r.text)
    assert requests.get(link["href"], timeout=30).content == data


def test_other_bytes_under_a_released_name_are_409_identical_bytes_200(srv, rel):
    vic, mem, index, filename, data = rel
    r = upload(srv, mem, index, filename, other_bytes())
    assert r.status_code == 409 and "already exists in non-volatile index" in r.json()["message"], r.text
    r = upload(srv, mem, index, filename, data)
    assert r.status_code == 200 and r.reason == "Upload of identical file to non volatile index.", r.reason
    [link] = links(srv, index)
    assert requests.get(link["href"], timeout=30).content == data


def test_a_deleted_released_name_is_not_refilled_by_a_member(srv, rel):
    """After the owner deleted a release with force, a member cannot bring other bytes back
    under its file name; the same bytes, or the owner's own new upload, are allowed."""
    vic, mem, index, filename, data = rel
    assert srv.api("DELETE", f"/{index}/relpkg/1.0?force=", auth=vic).status_code == 200
    r = upload(srv, mem, index, filename, other_bytes())
    assert r.status_code == 409 and "only the index owner" in r.json()["message"], r.text
    assert upload(srv, mem, index, filename, data).status_code == 200
    assert srv.api("DELETE", f"/{index}/relpkg/1.0?force=", auth=vic).status_code == 200
    assert upload(srv, vic, index, filename, other_bytes("fixed")).status_code == 200


def test_submit_does_not_rewrite_released_metadata(srv, rel):
    vic, mem, index, filename, data = rel
    form = {":action": "submit", "name": "relpkg", "version": "1.0", "summary": "rewritten"}
    r = requests.post(f"{srv.url}/{index}/", data=form, auth=mem, timeout=30)
    assert r.status_code == 409 and "summary" in r.json()["message"], r.text
    r = requests.post(f"{srv.url}/{index}/", data=form, auth=vic, timeout=30)
    assert r.status_code == 409, r.text
    same = {**form, "summary": "the real one"}
    assert requests.post(f"{srv.url}/{index}/", data=same, auth=mem, timeout=30).status_code == 200
    assert srv.api("GET", f"/{index}/relpkg/1.0").json()["result"]["summary"] == "the real one"


def test_a_second_file_does_not_rewrite_released_metadata(srv, rel):
    """A wheel uploaded later adds itself, not its summary over the released one."""
    from support.dists import wheel_bytes

    vic, mem, index, filename, data = rel
    wheel, wdata = wheel_bytes("relpkg", "1.0", summary="from the wheel")
    assert upload(srv, mem, index, wheel, wdata).status_code == 200
    assert srv.api("GET", f"/{index}/relpkg/1.0").json()["result"]["summary"] == "the real one"


def test_doc_zip_keeps_its_bytes(srv, rel):
    vic, mem, index, filename, data = rel

    def doczip(text: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("index.html", text)
        return buf.getvalue()

    first = doczip("<p>docs</p>")
    assert upload(srv, vic, index, "relpkg-1.0.doc.zip", first, action="doc_upload").status_code == 200
    r = upload(srv, mem, index, "relpkg-1.0.doc.zip", doczip("<p>phish</p>"), action="doc_upload")
    assert r.status_code == 409, r.text
    assert upload(srv, mem, index, "relpkg-1.0.doc.zip", first, action="doc_upload").status_code == 200


def test_volatile_index_keeps_the_members_rights(srv):
    """Compatibility: on a volatile index acl_upload members still delete and overwrite."""
    vic = srv.create_user(f"vic{uuid.uuid4().hex[:8]}", "pw")
    mem = srv.create_user(f"mem{uuid.uuid4().hex[:8]}", "pw")
    srv.create_index(vic, "dev", acl_upload=f"{vic[0]},{mem[0]}")
    index = f"{vic[0]}/dev"
    filename, data = sdist_bytes("relpkg", "1.0")
    assert upload(srv, vic, index, filename, data).status_code == 200
    assert upload(srv, mem, index, filename, other_bytes()).status_code == 200
    form = {":action": "submit", "name": "relpkg", "version": "1.0", "summary": "rewritten"}
    assert requests.post(f"{srv.url}/{index}/", data=form, auth=mem, timeout=30).status_code == 200
    assert srv.api("DELETE", f"/{index}/relpkg/1.0", auth=mem).status_code == 200
