"""Finding 20 (c): JSON endpoints refuse bodies a browser can send cross-site.

A web page can make a visitor's browser POST a form, or a ``text/plain`` body,
to the devpi server, and the browser adds the Basic credentials it remembers
for that server. If such a body is read as JSON, the page can push a release
to a production index in the visitor's name. Every JSON-taking endpoint must
answer 415 unless the body is declared ``application/json`` (which a browser
only sends cross-site after a CORS preflight we never grant). devpi-client
sends ``application/json`` and keeps working.
"""
from __future__ import annotations

import json

import requests
from support.dists import write_wheel


def test_push_with_a_browser_content_type_is_refused(sec_servers, tmp_path):
    """A push body sent as text/plain, as a form, or without a type is 415 and pushes
    nothing; the same body as application/json pushes."""
    server = sec_servers()
    alice = server.create_user("alice", "pw")
    server.create_index(alice, "dev")
    server.create_index(alice, "prod")
    assert server.upload("alice/dev", write_wheel(tmp_path, "csrfpkg", "1.0"), ("alice", "pw")).status_code == 200
    body = json.dumps({"name": "csrfpkg", "version": "1.0", "targetindex": "alice/prod"})
    for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": ctype} if ctype else {}
        req = requests.Request("POST", f"{server.url}/alice/dev", data=body.encode(), headers=headers,
                               auth=("alice", "pw")).prepare()
        if ctype is None:
            req.headers.pop("Content-Type", None)
        r = requests.Session().send(req, timeout=30)
        if ctype == "application/x-www-form-urlencoded":  # read as an upload form: refused as one
            assert r.status_code == 400, (ctype, r.status_code, r.text)
        else:
            assert r.status_code == 415, (ctype, r.status_code, r.text)
            assert "application/json" in r.json()["message"]
    assert server.api("GET", "/alice/prod/csrfpkg").status_code == 404
    r = requests.post(f"{server.url}/alice/dev", data=body, auth=("alice", "pw"), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert server.api("GET", "/alice/prod/csrfpkg").status_code == 200


def test_every_json_endpoint_wants_a_json_content_type(sec_servers):
    """Creating users and indexes, changing them, logging in: a text/plain body is 415."""
    server = sec_servers()
    alice = server.create_user("alice", "pw")
    plain = {"Content-Type": "text/plain"}
    cases = [("PUT", "/eve", {"password": "pw"}), ("PATCH", "/alice", {"email": "a@b.invalid"}),
             ("PUT", "/alice/newidx", {"type": "stage"}), ("POST", "/+login", {"user": "alice", "password": "pw"})]
    for method, path, doc in cases:
        r = server.api(method, path, data=json.dumps(doc), headers=plain, auth=alice)
        assert r.status_code == 415, (method, path, r.text)
    assert server.api("GET", "/eve").status_code == 404
    assert server.api("GET", "/alice/newidx").status_code == 404
    # devpi-client's spelling works, and a +json type too
    r = server.api("PUT", "/alice/newidx", data=json.dumps({"type": "stage"}), auth=alice,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    r = server.api("PATCH", "/alice", data=json.dumps({"email": "a@b.invalid"}), auth=alice,
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
