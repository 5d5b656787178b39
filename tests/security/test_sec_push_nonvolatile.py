"""Finding 10, through push: a push must keep the promises of a non-volatile index as an
upload does (server/repos/nonvolatile.py).

The attacker is a member of ``acl_upload`` of vic's non-volatile index ``vic/rel``
(not its owner). An upload of other bytes under a released file name is refused
there; before, a push was not: after the owner deleted a file with force, the
member pushed other bytes under the released name from an index of their own
(200), and any push that brought a new file name rewrote the released version's
metadata (summary, dependencies) with the pushed release's. What must hold: a push
is refused (409) where the same upload would be, and changes nothing then; a
registered release's metadata is only added to; pushing bytes that are there
already is a no-op success (as an identical upload), not a 409.
"""
from __future__ import annotations

import uuid

import pytest
import requests
from support.dists import sdist_bytes, wheel_bytes
from support.server import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request, sec_servers) -> ServerProcess:
    storage = request.getfixturevalue("pg_cluster").new_database() if request.param == "postgresql" else None
    return sec_servers(storage=storage)


@pytest.fixture
def rel(srv):
    """vic/rel (non-volatile, acl_upload vic and mem) with relpkg 1.0's sdist released by vic;
    mem/dev (volatile) is mem's own index, where mem prepares what to push."""
    vic = srv.create_user(f"vic{uuid.uuid4().hex[:8]}", "pw")
    mem = srv.create_user(f"mem{uuid.uuid4().hex[:8]}", "pw")
    srv.create_index(vic, "rel", volatile=False, acl_upload=f"{vic[0]},{mem[0]}")
    srv.create_index(mem, "dev")
    filename, data = sdist_bytes("relpkg", "1.0", summary="the real one")
    assert upload(srv, vic, f"{vic[0]}/rel", filename, data).status_code == 200
    return vic, mem, f"{vic[0]}/rel", filename, data


def upload(srv, auth, index: str, filename: str, data: bytes) -> requests.Response:
    form = {":action": "file_upload", "protocol_version": "1", "name": "relpkg", "version": "1.0"}
    return requests.post(f"{srv.url}/{index}/", data=form, files={"content": (filename, data)},
                         auth=auth, timeout=60)


def push(srv, auth, source: str, target: str) -> requests.Response:
    return srv.api("PUSH", f"/{source}", json={"name": "relpkg", "version": "1.0", "targetindex": target},
                   auth=auth)


def serial(srv) -> int:
    return srv.api("GET", "/+status").json()["result"]["serial"]


def released(srv, index: str) -> dict[str, bytes]:
    """File name -> the bytes the index serves for it now."""
    r = srv.api("GET", f"/{index}/relpkg/1.0")
    if r.status_code == 404:
        return {}
    return {lk["href"].rsplit("/", 1)[1]: requests.get(lk["href"], timeout=30).content
            for lk in r.json()["result"]["+links"] if lk["rel"] == "releasefile"}


def test_a_member_cannot_push_other_bytes_under_a_force_deleted_released_name(srv, rel):
    """The owner force-deletes the released sdist; the member pushes other bytes under its
    name from mem/dev. An upload of those bytes is 409: the push must be too, and leave the
    index as it was. The released bytes themselves may come back (the same file)."""
    vic, mem, index, filename, data = rel
    [href] = [lk["href"] for lk in srv.api("GET", f"/{index}/relpkg/1.0").json()["result"]["+links"]]
    assert srv.api("DELETE", href[len(srv.url):] + "?force=", auth=vic).status_code == 200
    _, evil = sdist_bytes("relpkg", "1.0", summary="evil", extra_files={"relpkg/evil.py": "import os\n"})
    assert upload(srv, mem, f"{mem[0]}/dev", filename, evil).status_code == 200
    assert upload(srv, mem, index, filename, evil).status_code == 409  # the rule the push must keep
    before, page = serial(srv), srv.api("GET", f"/{index}/relpkg/1.0").text
    r = push(srv, mem, f"{mem[0]}/dev", index)
    assert r.status_code == 409 and "only the index owner" in r.json()["message"], r.text
    assert serial(srv) == before
    assert released(srv, index) == {}
    assert srv.api("GET", f"/{index}/relpkg/1.0").text == page
    # the released bytes are the same file: a member may push them back
    assert upload(srv, mem, f"{mem[0]}/dev", filename, data).status_code == 200
    r = push(srv, mem, f"{mem[0]}/dev", index)
    assert r.status_code == 200, r.text
    assert released(srv, index) == {filename: data}


def test_a_push_with_a_new_file_does_not_rewrite_released_metadata(srv, rel):
    """mem pushes relpkg 1.0 with a new wheel whose metadata says otherwise: the wheel is
    added (a new name), the released summary stays (as for an upload of that wheel, only
    keys that were empty are filled)."""
    vic, mem, index, filename, data = rel
    wheel, wdata = wheel_bytes("relpkg", "1.0", summary="rewritten by push")
    assert upload(srv, mem, f"{mem[0]}/dev", wheel, wdata).status_code == 200
    r = push(srv, mem, f"{mem[0]}/dev", index)
    assert r.status_code == 200, r.text
    assert released(srv, index) == {filename: data, wheel: wdata}
    assert srv.api("GET", f"/{index}/relpkg/1.0").json()["result"]["summary"] == "the real one"


def test_pushing_the_released_bytes_again_is_a_no_op_success(srv, rel):
    """An identical upload is a 200 that changes nothing: so is an identical push (it was a
    409 that made `devpi push` of a release already promoted fail)."""
    vic, mem, index, filename, data = rel
    assert upload(srv, mem, f"{mem[0]}/dev", filename, data).status_code == 200
    before = serial(srv)
    for _ in range(2):
        r = push(srv, mem, f"{mem[0]}/dev", index)
        assert r.status_code == 200, r.text
        assert [a[0] for a in r.json()["result"]] == [200, 200], r.text
    assert serial(srv) == before  # nothing changed: no changelog entry either
    assert released(srv, index) == {filename: data}


def test_other_bytes_under_a_released_name_are_refused_by_push(srv, rel):
    """The released sdist is there; mem pushes a release whose sdist of that name has other
    bytes, together with a new wheel: 409, and neither file nor metadata changes."""
    vic, mem, index, filename, data = rel
    _, evil = sdist_bytes("relpkg", "1.0", summary="evil", extra_files={"relpkg/evil.py": "import os\n"})
    wheel, wdata = wheel_bytes("relpkg", "1.0", summary="evil")
    for name, content in ((filename, evil), (wheel, wdata)):
        assert upload(srv, mem, f"{mem[0]}/dev", name, content).status_code == 200
    before = serial(srv)
    r = push(srv, mem, f"{mem[0]}/dev", index)
    assert r.status_code == 409 and "already exists in non-volatile index" in r.json()["message"], r.text
    assert serial(srv) == before
    assert released(srv, index) == {filename: data}
