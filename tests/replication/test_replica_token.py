"""A replica that follows with a token of the replicate scope instead of a shared secret: the
primary needs no secret file, and revoking the token stops replication (the replica keeps
serving what it has and says why in /+status)."""
from __future__ import annotations

import requests
from support.populate import SIMPLE_JSON, upload_wheel
from support.replication import replica_args, serial_of, status, wait_until


def replicate_token(primary, tmp_path) -> tuple[str, str]:
    """(token id, the path of a file holding root's replicate token)."""
    root = primary.login("root", "root")
    r = primary.api("POST", "/root/+token-create", json={"allowed": ["replicate"], "description": "replica"},
                    auth=root)
    assert r.status_code == 200, r.text
    path = tmp_path / "replica-token"
    path.write_text(r.json()["result"]["token"] + "\n")
    return r.json()["result"]["id"], path


def test_a_replica_follows_with_a_replicate_token_until_it_is_revoked(make_server, tmp_path):
    primary = make_server()  # no --replica-secret-file: the token alone opens the feed
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    upload_wheel(primary, "alice/dev", "hello-lib", "1.0", alice)
    token_id, token_file = replicate_token(primary, tmp_path)
    replica = make_server(args=replica_args(primary.url, token_file))
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
    path = "/alice/dev/+simple/hello-lib/"
    a = requests.get(primary.url + path, headers={"Accept": SIMPLE_JSON}, timeout=30)
    b = requests.get(replica.url + path, headers={"Accept": SIMPLE_JSON}, timeout=30)
    assert a.status_code == b.status_code == 200 and a.content == b.content
    wait_until(lambda: status(replica)["replication"]["files"]["pending"] == 0, what="the files arriving")

    root = primary.login("root", "root")
    assert primary.api("DELETE", f"/root/+tokens/{token_id}", auth=root).status_code == 200
    upload_wheel(primary, "alice/dev", "after-revoke", "1.0", alice)
    wait_until(lambda: "not valid" in (status(replica)["replication"]["last_error"] or ""),
               what="the replica naming the refused token")
    assert requests.get(replica.url + "/alice/dev/+simple/after-revoke/", timeout=30).status_code == 404
    assert requests.get(replica.url + path, timeout=30).status_code == 200  # still serving what it has
