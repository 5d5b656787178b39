"""Users through devpi's JSON API: create, modify, delete, list, login and credentials."""
from __future__ import annotations

import base64
import sqlite3
import time

import requests
from devpi.server.accounts.auth import TokenSigner
from srv_helpers import unique


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def devpi_auth(user: str, secret: str) -> dict[str, str]:
    return {"X-Devpi-Auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}


def authstatus(s, headers: dict[str, str]) -> list:
    r = requests.get(s.url + "/+api", headers={"Accept": "application/json", **headers}, timeout=30)
    assert r.status_code == 200
    return r.json()["result"]["authstatus"]


def test_create_show_list_modify_delete(engine_server):
    s = engine_server
    name = unique("carol")
    r = s.api("PUT", f"/{name}", json={"password": "pw1", "email": "c@example.org", "title": "Carol",
                                        "description": "tester"})
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"] == "application/json"
    result = r.json()["result"]
    assert r.json()["type"] == "userconfig"
    assert result["username"] == name and result["email"] == "c@example.org"
    assert result["title"] == "Carol" and result["description"] == "tester"
    assert result["indexes"] == {}
    assert "password" not in result and "pwhash" not in result

    got = s.api("GET", f"/{name}").json()
    assert got["type"] == "userconfig"
    assert got["result"]["email"] == "c@example.org" and "pwhash" not in got["result"]

    listing = s.api("GET", "/").json()
    assert listing["type"] == "list:userconfig"
    assert name in listing["result"] and "root" in listing["result"]

    auth = s.login(name, "pw1")
    # devpi-client's read-modify-write: the whole dict comes back, created/modified/username ignored
    body = {**got["result"], "title": "Dr. Carol", "email": "new@example.org"}
    body.pop("indexes")
    r = s.api("PATCH", f"/{name}", json=body, auth=auth)
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "user updated"
    got = s.api("GET", f"/{name}").json()["result"]
    assert got["title"] == "Dr. Carol" and got["email"] == "new@example.org"

    # an empty value deletes the key
    r = s.api("PATCH", f"/{name}", json={"description": ""}, auth=auth)
    assert r.status_code == 200
    got = s.api("GET", f"/{name}").json()["result"]
    assert "description" not in got and got["title"] == "Dr. Carol"

    r = s.api("DELETE", f"/{name}", auth=auth)
    assert r.status_code == 200, r.text
    assert s.api("GET", f"/{name}").status_code == 404
    assert name not in s.api("GET", "/").json()["result"]


def test_create_refusals(engine_server):
    s = engine_server
    name = unique("dave")
    assert s.api("PUT", f"/{name}", json={"password": "x"}).status_code == 201
    r = s.api("PUT", f"/{name}", json={"password": "x"})
    assert r.status_code == 409 and "already exists" in r.json()["message"]
    r = s.api("PUT", f"/{unique('e')}", json={"email": "x@y"})
    assert r.status_code == 400 and r.json()["message"] == "password needs to be set"
    r = s.api("PUT", f"/{unique('e')}", json={"password": "x", "foo": "bar"})
    assert r.status_code == 400 and "Unknown keys in user config: foo" in r.json()["message"]
    r = s.api("PUT", "/bad%20name", json={"password": "x"})
    assert r.status_code == 400 and "invalid user name" in r.json()["message"]


def test_login_token_and_credential_forms(engine_server):
    s = engine_server
    name = unique("erin")
    s.api("PUT", f"/{name}", json={"password": "s3cret"})
    r = s.api("POST", "/+login", json={"user": name, "password": "s3cret"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["type"] == "proxyauth" and doc["message"] == "login successful"
    token, expiration = doc["result"]["password"], doc["result"]["expiration"]
    assert expiration == 36000 and "\n" not in token

    for headers in (devpi_auth(name, "s3cret"), devpi_auth(name, token), basic(name, "s3cret"),
                    basic(name, token)):
        assert authstatus(s, headers) == ["ok", name, []]
    # wrong secrets or garbage mean anonymous (not an error) on read endpoints
    for headers in (devpi_auth(name, "nope"), basic(name, "nope"), devpi_auth(name, token + "x"),
                    {"X-Devpi-Auth": "!!garbage!!"}):
        assert authstatus(s, headers) == ["noauth", "", []]
    # X-Devpi-Auth wins even when it is garbage (as devpi does)
    assert authstatus(s, {"X-Devpi-Auth": "!!garbage!!", **basic(name, "s3cret")})[0] == "noauth"
    # another user's token does not authenticate this user
    other = s.create_user(unique("frank"), "pw")
    assert authstatus(s, devpi_auth(name, other[1]))[0] == "noauth"


def test_login_failures(engine_server):
    s = engine_server
    name = unique("gina")
    s.api("PUT", f"/{name}", json={"password": "right"})
    r = s.api("POST", "/+login", json={"user": name, "password": "wrong"})
    assert r.status_code == 401 and r.json()["message"] == f"user {name!r} could not be authenticated"
    r = s.api("POST", "/+login", json={"user": "nobody-here", "password": "x"})
    assert r.status_code == 401 and "could not be authenticated" in r.json()["message"]
    r = s.api("POST", "/+login", json={"user": name})
    assert r.status_code == 400 and "no user/password" in r.json()["message"]
    r = s.api("POST", "/+login", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "could not decode json" in r.json()["message"]


def test_permissions_401_403(engine_server):
    s = engine_server
    a = s.create_user(unique("hank"), "pw")
    b = s.create_user(unique("ivy"), "pw")
    r = s.api("PATCH", f"/{a[0]}", json={"title": "x"})
    # anonymous: 403 as devpi-server 6 answers (issue 30); wrong credentials stay 401
    assert r.status_code == 403 and r.json()["message"] == f"no permission to modify user {a[0]}: log in first"
    r = s.api("PATCH", f"/{a[0]}", json={"title": "x"}, auth=(a[0], "wrong"))
    assert r.status_code == 401 and "authentication failed" in r.json()["message"]
    r = s.api("PATCH", f"/{a[0]}", json={"title": "x"}, auth=b)
    assert r.status_code == 403 and r.json()["message"] == f"no permission to modify user {a[0]}"
    r = s.api("DELETE", f"/{a[0]}", auth=b)
    assert r.status_code == 403 and "no permission" in r.json()["message"]
    # root may modify anyone; nobody may delete root
    root = s.login("root", "root")
    assert s.api("PATCH", f"/{a[0]}", json={"title": "by root"}, auth=root).status_code == 200
    assert s.api("GET", f"/{a[0]}").json()["result"]["title"] == "by root"
    r = s.api("DELETE", "/root", auth=root)
    assert r.status_code == 403 and "cannot be deleted" in r.json()["message"]
    # a user with a non-volatile index cannot be deleted
    s.create_index(a, "prod", volatile=False)
    r = s.api("DELETE", f"/{a[0]}", auth=a)
    assert r.status_code == 403 and "non-volatile index: prod" in r.json()["message"]
    assert s.api("GET", f"/{a[0]}").status_code == 200


def test_password_change_revokes_cached_password_and_tokens(engine_server):
    s = engine_server
    name = unique("jack")
    s.api("PUT", f"/{name}", json={"password": "old"})
    old_token = s.login(name, "old")[1]
    # Basic with the password: verified once, then remembered by the server
    for _ in range(2):
        assert authstatus(s, basic(name, "old")) == ["ok", name, []]
    r = s.api("PATCH", f"/{name}", json={"password": "new"}, auth=(name, old_token))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["type"] == "userpassword" and doc["message"] == "user updated, new proxy auth"
    new_token = doc["result"]["password"]
    # right after the change the old password and the old token are refused
    assert authstatus(s, basic(name, "old"))[0] == "noauth"
    assert authstatus(s, devpi_auth(name, old_token))[0] == "noauth"
    r = s.api("PATCH", f"/{name}", json={"title": "t"}, auth=(name, "old"))
    assert r.status_code == 401
    assert authstatus(s, basic(name, "new")) == ["ok", name, []]
    assert authstatus(s, devpi_auth(name, new_token)) == ["ok", name, []]
    assert s.api("POST", "/+login", json={"user": name, "password": "old"}).status_code == 401
    assert s.api("POST", "/+login", json={"user": name, "password": "new"}).status_code == 200


def test_passwords_stored_as_scrypt(sqlite_server):
    s = sqlite_server
    name = unique("kim")
    s.api("PUT", f"/{name}", json={"password": "pw"})
    with sqlite3.connect(s.serverdir / "devpi.sqlite") as db:
        (pwhash,) = db.execute("SELECT pwhash FROM users WHERE name = ?", (name,)).fetchone()
    assert pwhash.startswith("scrypt$") and "pw" not in pwhash.split("$")


def test_expired_token_is_refused():
    """Expiry is checked by the signer itself (a server-issued token lives 10 hours)."""
    signer = TokenSigner(b"k" * 32)
    fresh = signer.issue("alice", "hash1")
    assert signer.check("alice", fresh, "hash1")
    expired = signer.issue("alice", "hash1", lifetime=-1)
    assert not signer.check("alice", expired, "hash1")
    assert not signer.check("alice", fresh, "hash2")  # another password hash: revoked
    assert not signer.check("bob", fresh, "hash1")


def test_server_token_expires_after_ten_hours(sqlite_server):
    s = sqlite_server
    name = unique("lee")
    s.api("PUT", f"/{name}", json={"password": "pw"})
    token = s.login(name, "pw")[1]
    expires = int(token.split("~")[2])
    assert abs(expires - (time.time() + 36000)) < 60


def test_deleting_a_user_takes_its_indexes_out_of_others_bases(engine_server):
    """A user's data is theirs to delete (issue 24, finding 14; was a 409): another index that
    named one of the user's indexes as a base loses that base, so it cannot come back under
    the same name with other packages in it."""
    s = engine_server
    bob, alice = unique("bob"), unique("alice")
    bob_auth = s.create_user(bob, "pw")
    s.create_index(bob_auth, "a")
    s.create_index(bob_auth, "own", bases=f"{bob}/a")
    alice_auth = s.create_user(alice, "pw")
    s.create_index(alice_auth, "onbob", bases=f"{bob}/a,root/pypi")
    r = s.api("DELETE", f"/{bob}", auth=bob_auth)
    assert r.status_code == 200, r.text
    assert s.api("GET", f"/{bob}").status_code == 404
    assert s.api("GET", f"/{alice}/onbob").json()["result"]["bases"] == ["root/pypi"]
