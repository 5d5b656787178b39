"""Finding 12 (push gate): anonymous tox results satisfied ``push_requires``.

``acl_toxresult_upload`` defaults to ``:ANONYMOUS:`` (the original devpi's
default, which ``devpi test`` relies on), so anyone may attach a passing
report to any release file; the push gate counted it, and the attacker
"passed" a release nobody tested. Results still upload anonymously, but a
gate counts only those uploaded by users the index trusts: its owner, its
``acl_upload`` members and its ``toxresult_trusted`` list.
"""
from __future__ import annotations

import base64
import uuid

import pytest
import requests
from support.dists import write_sdist
from support.server import ServerProcess

REPORT = {"reportversion": "1", "platform": "linux", "host": "h",
          "testenvs": {"py": {"python": {"version_info": [3, 12, 1]}, "result": {"success": True},
                              "test": [{"command": ["pytest"], "retcode": 0, "output": ""}]}}}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request, sec_servers) -> ServerProcess:
    storage = request.getfixturevalue("pg_cluster").new_database() if request.param == "postgresql" else None
    return sec_servers(storage=storage)


def gated_release(srv, tmp_path, **config):
    """owner/dev requires a passing py312 run before a push; one sdist uploaded by the owner."""
    owner = srv.create_user(f"own{uuid.uuid4().hex[:8]}", "pw")
    srv.create_index(owner, "dev", push_requires="py312", **config)
    srv.create_index(owner, "prod")
    assert srv.upload(f"{owner[0]}/dev", write_sdist(tmp_path, "gated", "1.0"), owner).status_code == 200
    href = srv.api("GET", f"/{owner[0]}/dev/gated").json()["result"]["1.0"]["+links"][0]["href"]
    return owner, href


def post_report(href: str, auth: tuple[str, str] | None = None) -> None:
    headers = {"Accept": "application/json"}
    if auth:
        headers["X-Devpi-Auth"] = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    r = requests.post(href, json=REPORT, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["type"] == "toxresultpath", r.text


def push(srv, owner) -> requests.Response:
    return srv.api("PUSH", f"/{owner[0]}/dev", json={"name": "gated", "version": "1.0",
                                                     "targetindex": f"{owner[0]}/prod"}, auth=owner)


def test_anonymous_result_does_not_satisfy_push_requires(srv, tmp_path):
    """The attacker posts a passing report with no account: stored (devpi test's default
    works), but the push stays refused."""
    owner, href = gated_release(srv, tmp_path)
    post_report(href)
    r = push(srv, owner)
    assert r.status_code == 409 and "push_requires" in r.json()["message"], r.text


def test_result_of_an_untrusted_user_does_not_count(srv, tmp_path):
    """Any logged-in user may upload results; one outside acl_upload and toxresult_trusted
    does not pass the gate, not even with :ANONYMOUS: in toxresult_trusted."""
    owner, href = gated_release(srv, tmp_path, toxresult_trusted=":ANONYMOUS:")
    post_report(href)
    post_report(href, srv.create_user(f"mal{uuid.uuid4().hex[:8]}", "pw"))
    assert push(srv, owner).status_code == 409


def test_result_of_an_acl_upload_member_counts(srv, tmp_path):
    member = srv.create_user(f"mem{uuid.uuid4().hex[:8]}", "pw")
    owner, href = gated_release(srv, tmp_path)
    r = srv.api("PATCH", f"/{owner[0]}/dev", json=[f"acl_upload+={member[0]}"], auth=owner)
    assert r.status_code == 200, r.text
    post_report(href, member)
    r = push(srv, owner)
    assert r.status_code == 200, r.text


def test_result_of_a_toxresult_trusted_user_and_of_the_owner_count(srv, tmp_path):
    ci = srv.create_user(f"ci{uuid.uuid4().hex[:8]}", "pw")
    owner, href = gated_release(srv, tmp_path, toxresult_trusted=ci[0])
    assert srv.api("GET", f"/{owner[0]}/dev").json()["result"]["toxresult_trusted"] == [ci[0]]
    post_report(href, ci)
    assert push(srv, owner).status_code == 200
    (tmp_path / "2").mkdir()
    owner2, href2 = gated_release(srv, tmp_path / "2")
    post_report(href2, owner2)
    assert push(srv, owner2).status_code == 200
