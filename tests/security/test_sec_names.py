"""Finding 16: look-alike user and index names.

The attacker registers a name that reads like an existing one (``Root``, a
Cyrillic ``а`` in ``аlice``, a zero-width space or a right-to-left override
after ``alice``) to be mistaken for that user in listings, ACLs and bases.
Only ASCII letters, digits and ``-._@`` are accepted (as the message always
said), and names equal after case folding are one name: a case variant of an
existing user or index is a conflict (409). Lookups stay exact (``/Root`` is
no user), which is consistent because no two stored names differ only in case.
"""
from __future__ import annotations

from urllib.parse import quote

import pytest
from support.naming import unique


@pytest.mark.parametrize("name", ["\u0430lice", "alice\u200b", "alice\u202e", "al\u00efce", "\uff41lice"])
def test_non_ascii_user_names_are_refused(engine_srv, name):
    """Cyrillic, zero-width, bidi-override, accented and full-width look-alikes of 'alice'."""
    r = engine_srv.api("PUT", "/" + quote(name), json={"password": "pw"})
    assert r.status_code == 400, r.text
    assert "ASCII letters, digits and -._@" in r.json()["message"]
    assert engine_srv.api("GET", "/" + quote(name)).status_code == 404


def test_non_ascii_index_names_are_refused(engine_srv):
    """The same look-alikes as index names (alice/dev vs alice/dеv with a Cyrillic е)."""
    auth = engine_srv.create_user(unique("ix"), "pw")
    for name in ("d\u0435v", "dev\u200b", "dev\u202e"):
        r = engine_srv.api("PUT", f"/{auth[0]}/{quote(name)}", json={}, auth=auth)
        assert r.status_code == 400, r.text
        assert "ASCII" in r.json()["message"]


def test_case_variant_of_root_is_a_conflict(engine_srv):
    """'Root' next to 'root' would read as the administrator in every listing."""
    r = engine_srv.api("PUT", "/Root", json={"password": "pw"})
    assert r.status_code == 409, r.text
    assert "root" in r.json()["message"]
    assert "Root" not in engine_srv.api("GET", "/").json()["result"]


def test_case_variant_of_a_user_and_of_an_index_is_a_conflict(engine_srv):
    name = unique("carol")
    auth = engine_srv.create_user(name, "pw")
    r = engine_srv.api("PUT", f"/{name.upper()}", json={"password": "pw"})
    assert r.status_code == 409, r.text
    engine_srv.create_index(auth, "dev")
    r = engine_srv.api("PUT", f"/{name}/DEV", json={}, auth=auth)
    assert r.status_code == 409, r.text
    assert sorted(engine_srv.api("GET", f"/{name}").json()["result"]["indexes"]) == ["dev"]


def test_lookups_and_login_are_exact(engine_srv):
    """A case variant names no user: GET /CAROL is 404 and logging in as it fails (401)."""
    name = unique("dave")
    engine_srv.create_user(name, "pw")
    assert engine_srv.api("GET", f"/{name.upper()}").status_code == 404
    r = engine_srv.api("POST", "/+login", json={"user": name.upper(), "password": "pw"})
    assert r.status_code == 401, r.text
    assert engine_srv.api("POST", "/+login", json={"user": name, "password": "pw"}).status_code == 200


def test_plain_ascii_names_with_all_allowed_characters_still_work(engine_srv):
    name = unique("e.v-a_") + "@corp"
    auth = engine_srv.create_user(name, "pw")
    assert engine_srv.create_index(auth, "dev.1-x_y@z")["type"] == "stage"
