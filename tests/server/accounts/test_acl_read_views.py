"""What each reader of an index sees through inheritance (acl_read), and how it is cached.

The rule (doc/security.md): a reader sees releases only from the members of the
index's resolution order they may read. A private base still counts for the
mirror_whitelist guard, for everyone: a project it holds is not mixed with the
mirror's releases of that name (and that name is never asked upstream), whoever
asks. Pages are cached per view: all readers of an all-public chain share one
entry; readers with the same hidden members share theirs. Changing acl_read
takes effect with the change's answer (and on another process sharing the
PostgreSQL database once its changelog poller has seen the change).
"""
from __future__ import annotations

import base64
import time

import pytest
import requests
from support.dists import write_wheel

JSON = "application/vnd.pypi.simple.v1+json"


def get(server, path: str, who: tuple[str, str] | None = None) -> requests.Response:
    headers = {"Accept": JSON}
    if who:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()
    return requests.get(server.url + path, headers=headers, timeout=30)


def versions(r: requests.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted({f["filename"].split("-")[1] for f in r.json()["files"]})


def cached_pages(server) -> int:
    return requests.get(server.url + "/+status", timeout=30).json()["result"]["memory"]["page_cache"]["pages"]


@pytest.fixture
def world(make_server, upstream, storage_url, tmp_path):
    upstream.add_wheel("shadow-zq", "9.0")
    upstream.add_wheel("openup-zq", "5.0")
    srv = make_server(storage=storage_url, mirror_url=upstream.url)
    alice = srv.create_user("alice", "alice-pw")
    srv.create_user("bob", "bob-pw")
    srv.create_index(alice, "secret", acl_read=["alice"])
    srv.create_index(alice, "pub", bases=["alice/secret", "root/pypi"])
    srv.create_index(alice, "open", bases=["root/pypi"])
    for index, name, version in (("alice/secret", "shadow-zq", "1.0"), ("alice/secret", "onlysecret-zq", "1.0"),
                                 ("alice/pub", "pubpkg-zq", "2.0"),
                                 ("alice/open", "openpkg-zq", "3.0")):
        wheel = write_wheel(tmp_path, name, version)
        assert srv.upload(index, wheel, ("alice", "alice-pw")).status_code == 200
    return srv


READERS = {"anonymous": None, "bob": ("bob", "bob-pw"), "alice": ("alice", "alice-pw")}


def test_private_base_hidden_but_still_guards_the_mirror(world, upstream):
    srv = world
    upstream.reset_log()
    for who in ("anonymous", "bob"):
        # the private base's project: not shown, and the mirror's release of that name neither
        r = get(srv, "/alice/pub/+simple/shadow-zq/", READERS[who])
        assert r.status_code == 404, r.text
        assert get(srv, "/alice/pub/shadow-zq", READERS[who]).status_code == 404
        web = requests.get(srv.url + "/alice/pub/shadow-zq", auth=READERS[who], timeout=30,
                           headers={"Accept": "text/html"})  # the web page agrees with the simple page
        assert web.status_code == 404 and "9.0" not in web.text, web.text[:500]
        names = [p["name"] for p in get(srv, "/alice/pub/+simple/", READERS[who]).json()["projects"]]
        assert "pubpkg-zq" in names and "onlysecret-zq" not in names  # (shadow-zq: the mirror lists it)
        assert get(srv, "/alice/pub/+simple/onlysecret-zq/", READERS[who]).status_code == 404
    assert versions(get(srv, "/alice/pub/+simple/shadow-zq/", READERS["alice"])) == ["1.0"]
    names = [p["name"] for p in get(srv, "/alice/pub/+simple/", READERS["alice"]).json()["projects"]]
    assert "onlysecret-zq" in names
    assert upstream.count("/simple/shadow-zq/") == 0  # the private name never went upstream
    # what is not guarded still comes from the mirror, for everyone
    for who in READERS:
        assert versions(get(srv, "/alice/pub/+simple/openup-zq/", READERS[who])) == ["5.0"]
    # whitelisted: non-readers get the mirror's releases only, alice both
    alice = srv.login("alice", "alice-pw")
    assert srv.api("PATCH", "/alice/pub", json=["mirror_whitelist=shadow-zq"], auth=alice).status_code == 200
    assert versions(get(srv, "/alice/pub/+simple/shadow-zq/", READERS["bob"])) == ["9.0"]
    assert versions(get(srv, "/alice/pub/+simple/shadow-zq/")) == ["9.0"]
    assert versions(get(srv, "/alice/pub/+simple/shadow-zq/", READERS["alice"])) == ["1.0", "9.0"]


def test_views_are_cached_per_visible_members(world):
    srv = world
    before = cached_pages(srv)
    for _ in range(2):
        for who in READERS:
            assert versions(get(srv, "/alice/open/+simple/openpkg-zq/", READERS[who])) == ["3.0"]
    assert cached_pages(srv) == before + 1  # an all-public chain: one page for every reader
    for _ in range(2):
        for who in READERS:
            assert get(srv, "/alice/pub/+simple/pubpkg-zq/", READERS[who]).status_code == 200
    assert cached_pages(srv) == before + 3  # alice's full view, and the one of anonymous and bob


def test_acl_change_applies_to_cached_pages_at_once(world):
    srv = world
    alice = srv.login("alice", "alice-pw")
    for _ in range(2):
        assert versions(get(srv, "/alice/pub/+simple/shadow-zq/", READERS["alice"])) == ["1.0"]
        assert get(srv, "/alice/pub/+simple/shadow-zq/", READERS["bob"]).status_code == 404
    # bob becomes a reader of the base: his view of alice/pub has it at once
    assert srv.api("PATCH", "/alice/secret", json=["acl_read+=bob"], auth=alice).status_code == 200
    assert versions(get(srv, "/alice/pub/+simple/shadow-zq/", READERS["bob"])) == ["1.0"]
    assert get(srv, "/alice/pub/+simple/shadow-zq/").status_code == 404
    # and alice/open turned private is refused at once, though its page was cached
    for _ in range(2):
        assert get(srv, "/alice/open/+simple/openpkg-zq/").status_code == 200
    assert srv.api("PATCH", "/alice/open", json=["acl_read=alice"], auth=alice).status_code == 200
    assert get(srv, "/alice/open/+simple/openpkg-zq/").status_code == 401
    assert get(srv, "/alice/open/+simple/openpkg-zq/", READERS["bob"]).status_code == 403


def test_acl_change_reaches_another_process(make_server, pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    shared = tmp_path / "shared"
    a = make_server(serverdir=shared, storage=url)
    b = make_server(serverdir=shared, storage=url)
    alice = a.create_user("alice", "alice-pw")
    a.create_index(alice, "flip")
    assert a.upload("alice/flip", write_wheel(tmp_path, "flipmp-zq", "1.0"), ("alice", "alice-pw")).status_code == 200
    deadline = time.monotonic() + 10
    while get(b, "/alice/flip/+simple/flipmp-zq/").status_code != 200:
        assert time.monotonic() < deadline, "b never saw the upload"
        time.sleep(0.1)
    assert get(b, "/alice/flip/+simple/flipmp-zq/").status_code == 200  # cached on b now
    assert a.api("PATCH", "/alice/flip", json=["acl_read=alice"], auth=alice).status_code == 200
    deadline = time.monotonic() + 5  # the poll interval is 0.5 s
    while (r := get(b, "/alice/flip/+simple/flipmp-zq/")).status_code != 401:
        assert r.status_code == 200 and time.monotonic() < deadline, r.status_code
        time.sleep(0.05)
    assert versions(get(b, "/alice/flip/+simple/flipmp-zq/", ("alice", "alice-pw"))) == ["1.0"]


def test_cached_restricted_page_follows_password_changes_at_once(world):
    """The restricted page's fast path (credentials told apart without waiting) serves alice's
    cached page, and stops at once for her old password when she changes it."""
    srv = world
    url = "/alice/secret/+simple/shadow-zq/"
    for _ in range(3):
        assert versions(get(srv, url, ("alice", "alice-pw"))) == ["1.0"]
    assert get(srv, url, ("alice", "wrong")).status_code == 401
    assert get(srv, url, ("bob", "bob-pw")).status_code == 403
    alice = srv.login("alice", "alice-pw")
    assert srv.api("PATCH", "/alice", json={"password": "new-pw"}, auth=alice).status_code == 200
    assert get(srv, url, ("alice", "alice-pw")).status_code == 401
    for _ in range(3):
        assert versions(get(srv, url, ("alice", "new-pw"))) == ["1.0"]
    token = srv.login("alice", "new-pw")[1]  # a login token, as devpi install sends it
    for _ in range(2):
        assert versions(get(srv, url, ("alice", token))) == ["1.0"]
