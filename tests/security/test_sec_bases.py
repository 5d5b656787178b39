"""Finding 14: another user can block your deletes.

bob puts ``bases=vic/tmp`` on his own index, which needs no consent from vic;
vic's ``DELETE /vic/tmp`` and ``DELETE /vic`` then answered 409, so bob held
vic's data hostage. A user's data is theirs to delete: the deletes succeed,
the deleted index leaves the ``bases`` of every other index, and each index so
changed gets its own changelog entry in the same serial as the delete.
"""
from __future__ import annotations

from support.naming import unique


def serial(engine_srv) -> int:
    return int(engine_srv.api("GET", "/+status").json()["result"]["serial"])


def changes_at(engine_srv, at: int) -> list[dict]:
    r = engine_srv.api("GET", f"/+changelog/{at}")
    assert r.status_code == 200, r.text
    return r.json()["result"]["changes"]


def test_another_users_base_does_not_block_deleting_an_index(engine_srv):
    """DELETE /vic/tmp succeeds; bob's index keeps its other bases; one changelog serial."""
    vic, bob = unique("vic"), unique("bob")
    vic_auth, bob_auth = engine_srv.create_user(vic, "pw"), engine_srv.create_user(bob, "pw")
    engine_srv.create_index(vic_auth, "tmp")
    engine_srv.create_index(bob_auth, "leech", bases=f"{vic}/tmp,root/pypi")
    engine_srv.create_index(bob_auth, "leech2", bases=f"{vic}/tmp")
    r = engine_srv.api("DELETE", f"/{vic}/tmp", auth=vic_auth)
    assert r.status_code == 201, r.text
    at = serial(engine_srv)
    assert engine_srv.api("GET", f"/{vic}/tmp").status_code == 404
    assert engine_srv.api("GET", f"/{bob}/leech").json()["result"]["bases"] == ["root/pypi"]
    assert engine_srv.api("GET", f"/{bob}/leech2").json()["result"]["bases"] == []
    changes = changes_at(engine_srv, at)
    modified = {c["index"] for c in changes if c.get("kind") == "index" and c.get("op") == "modify"}
    assert modified == {f"{bob}/leech", f"{bob}/leech2"}, changes
    assert any(c.get("index") == f"{vic}/tmp" and c.get("op") == "delete" for c in changes), changes
    # and an index of that name created again is not silently a base of bob's
    engine_srv.create_index(vic_auth, "tmp")
    assert engine_srv.api("GET", f"/{bob}/leech").json()["result"]["bases"] == ["root/pypi"]


def test_another_users_base_does_not_block_deleting_the_user(engine_srv):
    """DELETE /vic succeeds though bob's index names vic/tmp as a base."""
    vic, bob = unique("vic"), unique("bob")
    vic_auth, bob_auth = engine_srv.create_user(vic, "pw"), engine_srv.create_user(bob, "pw")
    engine_srv.create_index(vic_auth, "tmp")
    engine_srv.create_index(vic_auth, "also", bases=f"{vic}/tmp")
    engine_srv.create_index(bob_auth, "leech", bases=f"{vic}/also,{vic}/tmp")
    r = engine_srv.api("DELETE", f"/{vic}", auth=vic_auth)
    assert r.status_code == 200, r.text
    assert engine_srv.api("GET", f"/{vic}").status_code == 404
    assert engine_srv.api("GET", f"/{bob}/leech").json()["result"]["bases"] == []
    # bob's index still serves (no dangling base makes it fail)
    assert engine_srv.api("GET", f"/{bob}/leech/+simple/").status_code == 200
