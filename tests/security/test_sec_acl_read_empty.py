"""An emptied ``acl_read`` fails closed: owner and root only, never everyone.

alice keeps ``alice/secret`` readable by herself only, then takes her own name out
of ``acl_read`` (``acl_read-=alice``: the owner reads anyway) or sets it to an
empty list. Only a *missing* key means "everyone" (indexes made before acl_read
existed); an empty list names no reader, so anonymous and bob must still be
refused (401 / 403) on the simple pages and the JSON, while alice reads on.
"""
from __future__ import annotations

import pytest
import requests
from support.dists import write_wheel

PROJECT = "emptiedacl-zq"


@pytest.fixture(scope="module")
def emptied(srv, tmp_path_factory):
    alice = srv.create_user("alice", "alice-pw")
    srv.create_user("bob", "bob-pw")
    srv.create_index(alice, "byitem", acl_read=["alice"])
    srv.create_index(alice, "bylist", acl_read=["alice"])
    srv.create_index(alice, "bytext", acl_read=["alice"])
    srv.create_index(alice, "bynull", acl_read=["alice"])
    tmp = tmp_path_factory.mktemp("emptied")
    for name in ("byitem", "bylist", "bytext", "bynull"):
        assert srv.upload(f"alice/{name}", write_wheel(tmp, PROJECT, "1.0"), ("alice", "alice-pw")).status_code == 200
    r = requests.patch(f"{srv.url}/alice/byitem", json=["acl_read-=alice"], auth=("alice", "alice-pw"), timeout=60)
    assert r.status_code == 200 and r.json()["result"]["acl_read"] == [], r.text
    # an emptied text field is removed from the config; an emptied acl_read must not be, or
    # the index would fall back to the default reader, everyone
    for name, value in (("bylist", []), ("bytext", ""), ("bynull", None)):
        r = requests.patch(f"{srv.url}/alice/{name}", json={"acl_read": value}, auth=("alice", "alice-pw"),
                           timeout=60)
        assert r.status_code == 200 and r.json()["result"]["acl_read"] == [], r.text
    return srv


@pytest.mark.parametrize("index", ["byitem", "bylist", "bytext", "bynull"])
@pytest.mark.parametrize("path", ["/+simple/", f"/+simple/{PROJECT}/", f"/{PROJECT}", ""])
def test_an_empty_acl_read_names_no_reader(emptied, index, path):
    url = f"{emptied.url}/alice/{index}{path}"
    r = requests.get(url, auth=("alice", "alice-pw"), timeout=60)
    assert r.status_code == 200 and PROJECT in r.text
    for _ in range(2):  # the second answer may come from the page cache
        anon = requests.get(url, timeout=60)
        assert anon.status_code == 401, anon.text[:200]
        assert PROJECT not in anon.text
        bob = requests.get(url, auth=("bob", "bob-pw"), timeout=60)
        assert bob.status_code == 403, bob.text[:200]
        assert PROJECT not in bob.text


def test_an_empty_acl_read_is_left_out_of_listings(emptied):
    for auth in (None, ("bob", "bob-pw")):
        r = requests.get(f"{emptied.url}/alice", auth=auth, headers={"Accept": "application/json"}, timeout=60)
        assert r.status_code == 200
        assert not any(name in r.text for name in ("byitem", "bylist", "bytext", "bynull"))
