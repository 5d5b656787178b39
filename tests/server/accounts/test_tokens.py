"""Scoped API tokens against the real server: what a token may do, and nothing more.

A token is created with the password (or a login token), used like a password by
twine (``-u __token__``), requests (Basic with the owner's name) and devpi's
X-Devpi-Auth header, and limited to its actions and indexes on every request.
"""
from __future__ import annotations

import base64
import time

import requests
from srv_helpers import new_stage, raw_upload, twine_upload, unique
from support.dists import wheel_bytes, write_wheel
from support.tokens import expire_token


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(),
            "Accept": "application/json"}


def create_token(s, auth, user=None, **body) -> requests.Response:
    return s.api("POST", f"/{user or auth[0]}/+token-create", json=body, auth=auth)


def new_token(s, auth, **body) -> tuple[str, dict]:
    r = create_token(s, auth, **body)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert r.json()["type"] == "token-info"
    return result["token"], result


def authstatus(s, headers: dict[str, str]) -> list:
    r = requests.get(f"{s.url}/+api", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["result"]["authstatus"][:2]


def storage_url(s) -> str:
    return s.storage or f"sqlite:///{s.serverdir / 'devpi.sqlite'}"


def expire_in_database(s, token_id: str) -> None:
    expire_token(storage_url(s), token_id)


def test_twine_upload_with_upload_token_on_its_index_only(engine_server, tmp_path):
    s = engine_server
    auth, dev = new_stage(s)
    user = auth[0]
    s.create_index(auth, "prod")
    token, info = new_token(s, auth, allowed=["upload"], indexes=[dev], description="CI")
    assert token.startswith("devpi_") and info["allowed"] == ["upload"] and info["indexes"] == [dev]
    name = unique("tok-pkg")
    wheel = write_wheel(tmp_path, name, "1.0")
    p = twine_upload(s, dev, "__token__", token, [wheel])
    assert p.returncode == 0, p.stdout + p.stderr
    assert s.api("GET", f"/{dev}/{name}").json()["result"].keys() == {"1.0"}
    # the owner's name works as the user name too (devpi's clients send it)
    p = twine_upload(s, dev, user, token, [write_wheel(tmp_path, name, "1.1")])
    assert p.returncode == 0, p.stdout + p.stderr
    # another index of the same user: outside the token's scope
    p = twine_upload(s, f"{user}/prod", "__token__", token, [wheel])
    assert p.returncode != 0 and "403" in p.stdout + p.stderr
    assert s.api("GET", f"/{user}/prod").json()["result"]["projects"] == []
    # the password still does everything
    p = twine_upload(s, f"{user}/prod", user, "pw", [wheel])
    assert p.returncode == 0, p.stdout + p.stderr


def test_upload_token_gets_403_on_everything_else(engine_server):
    s = engine_server
    auth, dev = new_stage(s)
    user = auth[0]
    name = unique("keep")
    fn, data = wheel_bytes(name, "1.0")
    assert raw_upload(s, dev, fn, data, (user, "pw"), name=name, version="1.0").status_code == 200
    token, _ = new_token(s, auth, allowed=["upload"], indexes=[dev])
    h = basic("__token__", token)
    assert authstatus(s, h) == ["ok", user]
    attempts = [
        ("DELETE", f"/{dev}/{name}", None),  # deleting
        ("DELETE", f"/{dev}/{name}/1.0", None),
        ("PATCH", f"/{dev}", {"title": "changed"}),  # changing the index
        ("DELETE", f"/{dev}", None),
        ("PUT", f"/{user}/other", {}),  # creating an index
        ("POST", f"/{user}/+token-create", {"allowed": ["upload"]}),  # creating tokens
        ("GET", f"/{user}/+tokens", None),
        ("PATCH", f"/{user}", {"password": "stolen"}),  # changing the password
        ("PATCH", f"/{user}", {"email": "x@example.org"}),
        ("DELETE", f"/{user}", None),
    ]
    for method, path, body in attempts:
        r = requests.request(method, s.url + path, json=body, headers=h, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["message"]
    assert s.api("GET", f"/{dev}/{name}").json()["result"].keys() == {"1.0"}
    assert s.api("GET", f"/{dev}").json()["result"].get("title") in (None, "")
    assert s.api("GET", f"/{user}/other").status_code == 404
    assert s.login(user, "pw")[0] == user  # the password is unchanged


def test_actions_and_indexes_each_open_their_door(engine_server):
    s = engine_server
    auth, dev = new_stage(s)
    user = auth[0]
    s.create_index(auth, "prod", acl_toxresult_upload=[user])
    prod = f"{user}/prod"
    name = unique("act")
    fn, data = wheel_bytes(name, "1.0")
    assert raw_upload(s, dev, fn, data, (user, "pw"), name=name, version="1.0").status_code == 200

    # push: needs push on the source and upload on the target
    push_only, _ = new_token(s, auth, allowed=["push"], indexes=[dev])
    body = {"name": name, "version": "1.0", "targetindex": prod}
    r = requests.post(f"{s.url}/{dev}", json=body, headers=basic("__token__", push_only), timeout=30)
    assert r.status_code in (401, 403), r.text
    upload_only, _ = new_token(s, auth, allowed=["upload"], indexes=[dev, prod])
    r = requests.post(f"{s.url}/{dev}", json=body, headers=basic("__token__", upload_only), timeout=30)
    assert r.status_code == 403, r.text
    pusher, _ = new_token(s, auth, allowed=["push", "upload"], indexes=[dev, prod])
    r = requests.post(f"{s.url}/{dev}", json=body, headers=basic("__token__", pusher), timeout=30)
    assert r.status_code == 200, r.text
    assert s.api("GET", f"/{prod}").json()["result"]["projects"] == [name]

    # toxresult: acl_toxresult_upload names the user; only a token with toxresult acts as them
    link = s.api("GET", f"/{prod}/{name}/1.0").json()["result"]["+links"][0]["href"]
    path = link.split(f"/{prod}/", 1)[1].split("#")[0]
    r = requests.post(f"{s.url}/{prod}/{path}", json={"testenvs": {}}, headers=basic("__token__", pusher),
                      timeout=30)
    assert r.status_code == 403, r.text
    tox, _ = new_token(s, auth, allowed=["toxresult"], indexes=[prod])
    r = requests.post(f"{s.url}/{prod}/{path}", json={"testenvs": {}}, headers=basic("__token__", tox),
                      timeout=30)
    assert r.status_code == 200, r.text

    # index-admin: creating an index needs it with no index list, or the new index named
    named, _ = new_token(s, auth, allowed=["index-admin"], indexes=[f"{user}/made"])
    r = requests.put(f"{s.url}/{user}/other", json={}, headers=basic("__token__", named), timeout=30)
    assert r.status_code == 403, r.text
    r = requests.put(f"{s.url}/{user}/made", json={}, headers=basic("__token__", named), timeout=30)
    assert r.status_code == 200, r.text
    r = requests.patch(f"{s.url}/{user}/made", json={"title": "T"}, headers=basic("__token__", named),
                       timeout=30)
    assert r.status_code == 200, r.text
    r = requests.patch(f"{s.url}/{dev}", json={"title": "T"}, headers=basic("__token__", named), timeout=30)
    assert r.status_code == 403, r.text

    # delete (and yank): on its index only
    deleter, _ = new_token(s, auth, allowed=["delete"], indexes=[dev])
    r = requests.delete(f"{s.url}/{prod}/{name}/1.0", headers=basic("__token__", deleter), timeout=30)
    assert r.status_code == 403, r.text
    r = requests.delete(f"{s.url}/{dev}/{name}/1.0", headers=basic("__token__", deleter), timeout=30)
    assert r.status_code == 200, r.text


def test_read_token_authenticates_and_reads(engine_server):
    """A read token is its owner for reading; here every index is public, so it reads them all
    (acl_read enforcement on each surface has its own tests)."""
    s = engine_server
    auth, dev = new_stage(s)
    token, _ = new_token(s, auth, allowed=["read"])
    h = basic("__token__", token)
    assert authstatus(s, h) == ["ok", auth[0]]
    r = requests.get(f"{s.url}/{dev}", headers=h, timeout=30)
    assert r.status_code == 200 and r.json()["result"]["type"] == "stage"
    r = requests.get(f"{s.url}/{dev}/+simple/", headers=h, timeout=30)
    assert r.status_code == 200


def test_list_shows_everything_but_the_secret(engine_server):
    s = engine_server
    auth, dev = new_stage(s)
    token, info = new_token(s, auth, allowed=["upload", "toxresult"], indexes=[dev], description="nightly")
    # the secret may hold "_" itself (token_urlsafe): it is everything after the id
    secret = token.removeprefix(f"devpi_{info['id']}_")
    assert secret != token and len(secret) >= 40
    r = s.api("GET", f"/{auth[0]}/+tokens", auth=auth)
    assert r.status_code == 200 and r.json()["type"] == "tokens-info"
    assert secret not in r.text and token not in r.text
    listed = r.json()["result"]["tokens"][info["id"]]
    assert listed["allowed"] == ["upload", "toxresult"] and listed["indexes"] == [dev]
    assert listed["description"] == "nightly" and listed["last_used"] is None and listed["expired"] is False
    assert listed["created"] <= time.time() and listed["expires"] > time.time() + 300 * 86400
    assert set(listed) == {"id", "user", "allowed", "indexes", "expires", "description", "created",
                           "last_used", "expired"}
    assert authstatus(s, basic("__token__", token)) == ["ok", auth[0]]
    listed = s.api("GET", f"/{auth[0]}/+tokens", auth=auth).json()["result"]["tokens"][info["id"]]
    assert listed["last_used"] is not None and abs(listed["last_used"] - time.time()) < 120


def test_revoked_and_expired_tokens_fail_at_once(engine_server):
    s = engine_server
    auth, dev = new_stage(s)
    token, info = new_token(s, auth, allowed=["upload"])
    other, other_info = new_token(s, auth, allowed=["upload"])
    for t in (token, other):
        assert authstatus(s, basic("__token__", t)) == ["ok", auth[0]]
    r = s.api("DELETE", f"/{auth[0]}/+tokens/{info['id']}", auth=auth)
    assert r.status_code == 200, r.text
    assert authstatus(s, basic("__token__", token)) == ["noauth", ""]
    r = requests.get(f"{s.url}/{auth[0]}/+tokens", headers=basic("__token__", token), timeout=30)
    assert r.status_code == 401
    assert s.api("DELETE", f"/{auth[0]}/+tokens/{info['id']}", auth=auth).status_code == 404
    expire_in_database(s, other_info["id"])
    assert authstatus(s, basic("__token__", other)) == ["noauth", ""]
    fn, data = wheel_bytes(unique("exp"), "1.0")
    assert raw_upload(s, dev, fn, data, ("__token__", other)).status_code == 401
    listed = s.api("GET", f"/{auth[0]}/+tokens", auth=auth).json()["result"]["tokens"]
    assert list(listed) == [other_info["id"]] and listed[other_info["id"]]["expired"] is True


def test_login_with_a_token_hands_back_the_token_not_a_login(engine_server):
    """The original devpi-client's ``devpi login USER --password TOKEN`` keeps the token's limits."""
    s = engine_server
    auth, dev = new_stage(s)
    token, info = new_token(s, auth, allowed=["upload"], indexes=[dev])
    for user in ("__token__", auth[0]):
        r = s.api("POST", "/+login", json={"user": user, "password": token})
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        assert result["password"] == token and result["user"] == auth[0]
        assert 0 < result["expiration"] <= 366 * 86400
    r = s.api("POST", "/+login", json={"user": unique("nobody"), "password": token})
    assert r.status_code == 401


def test_tokens_survive_a_restart(module_servers):
    s = module_servers()
    auth, dev = new_stage(s)
    token, info = new_token(s, auth, allowed=["upload"], indexes=[dev])
    s.restart()
    assert authstatus(s, basic("__token__", token)) == ["ok", auth[0]]
    listed = s.api("GET", f"/{auth[0]}/+tokens", auth=(auth[0], s.login(auth[0], "pw")[1])).json()
    assert info["id"] in listed["result"]["tokens"]
