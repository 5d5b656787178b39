"""`devpi test` pointed at a replica (issue 29): the release comes from the replica, the run's
live events and the tox report go through it to the primary, and when the command returns
the replica shows the results (its `devpi list` matrix) as the primary does."""
from __future__ import annotations

import pytest
from runsupport import TOX_INI, Env
from support.replication import primary_args, replica_args, serial_of, wait_until, write_secret
from support.server import ServerProcess

PASSING = "def test_one():\n    pass\n"


@pytest.fixture(scope="module")
def replica_env(tmp_path_factory, wheelhouse, bindir):
    tmp = tmp_path_factory.mktemp("testruns-replica")
    secret = write_secret(tmp)
    primary = ServerProcess(tmp / "primary", args=primary_args(secret)).start()
    replica = None
    try:
        auth = primary.create_user("alice", "secret")
        primary.create_index(auth, "dev")
        for wheel in sorted(wheelhouse.glob("*.whl")):
            assert primary.upload("alice/dev", wheel, auth).status_code == 200
        replica = ServerProcess(tmp / "replica", args=replica_args(primary.url, secret)).start()
        wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
        e = Env(replica, auth, "alice/dev", tmp / "client", bindir, tmp)
        e.devpi("use", f"{replica.url}/alice/dev", check=True)
        e.devpi("login", "alice", "--password", "secret", check=True)
        yield e, primary
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()


def test_devpi_test_against_a_replica_reports_to_the_primary_and_shows_at_once(replica_env):
    env, primary = replica_env
    href = env.upload_project("replpkg", {"tox.ini": TOX_INI, "tests/test_one.py": PASSING})["sdist"]
    assert href.startswith(env.server.url)  # uploaded through the replica (forwarded)
    proc = env.devpi("test", "replpkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # no waiting here: the replica answered each write once its serial had come back
    [run] = env.runs("replpkg")
    assert run["status"] == "passed" and run["envs"]["py"]["status"] == "passed"
    on_primary = primary.api("GET", "/alice/dev/replpkg/1.0/+testruns", auth=env.auth).json()["result"]
    assert [r["status"] for r in on_primary] == ["passed"]
    links = env.server.api("GET", "/alice/dev/replpkg").json()["result"]["1.0"]["+links"]
    assert [lk["rel"] for lk in links].count("toxresult") == 1
    listing = env.devpi("list", "replpkg", check=True).stdout
    assert "tests passed" in listing and "passed" in listing.splitlines()[-1]
    assert serial_of(env.server) == serial_of(primary)
