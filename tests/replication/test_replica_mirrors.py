"""Mirror indexes on a replica (this slice): replicated as configuration, but offline: the
replica never asks the upstream itself (fetching through the primary is a later slice,
doc/replication.md), and /+status says so."""
from __future__ import annotations

import requests
from support.replication import primary_args, replica_args, serial_of, status, wait_until, write_secret


def test_a_replica_never_asks_the_upstream(make_server, upstream, tmp_path):
    upstream.add_wheel("up-lib", "1.0")
    secret = write_secret(tmp_path)
    primary = make_server(mirror_url=upstream.url, args=primary_args(secret))
    r = requests.get(primary.url + "/root/pypi/+simple/up-lib/", timeout=60)
    assert r.status_code == 200 and "up-lib" in r.text  # the primary mirrors it
    replica = make_server(mirror_url=upstream.url, args=replica_args(primary.url, secret))
    wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
    upstream.reset_log()
    r = requests.get(replica.url + "/root/pypi/+simple/up-lib/", timeout=60)
    assert r.status_code in (200, 404)
    assert "up-lib-1.0" not in r.text
    assert upstream.count() == 0
    assert "offline" in status(replica)["replication"]["mirrors"]
    assert status(replica)["offline"] is True
