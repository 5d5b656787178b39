"""A `devpi test` client that dies mid-run leaves its run interrupted, never passed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from runsupport import TOX_INI

SLOW = "import time\n\ndef test_quick():\n    pass\n\ndef test_slow():\n    time.sleep(600)\n"


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_client_leaves_run_interrupted(env):
    env.upload_project("slowpkg", {"tox.ini": TOX_INI, "tests/test_s.py": SLOW}, wheel=True)
    proc = subprocess.Popen([sys.executable, "-m", "devpi.client", "--clientdir", str(env.clientdir), "test",
                             "--run-timeout", "3", "--select", r"\.whl$", "slowpkg"], env=env.client_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def quick_test_reported():
            runs = env.runs("slowpkg")
            return runs if runs and runs[0]["counts"].get("passed") else None

        [run] = wait_for(quick_test_reported, 600, "the first test's result")
        assert run["status"] == "running"
        # quiet (test_slow sleeps) but alive: heartbeats keep it running past its timeout
        time.sleep(5)
        assert env.runs("slowpkg")[0]["status"] == "running"
        listing = env.devpi("list", "slowpkg", check=True).stdout
        assert [line.split()[-1] for line in listing.splitlines() if line.strip().startswith("py ")] == ["running"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client, tox and pytest: nobody says goodbye
        proc.wait()

    seen = []

    def interrupted():
        [run] = env.runs("slowpkg")
        seen.append(run["status"])
        return run if run["status"] == "interrupted" else None

    run = wait_for(interrupted, 60, "the run to be marked interrupted")
    assert set(seen) <= {"running", "interrupted"}
    assert run["finished"] is None and run["exitcode"] is None and run["toxresult"] is None
    assert run["envs"]["py"]["status"] == "interrupted"
    links = env.server.api("GET", f"/{env.index}/slowpkg").json()["result"]["1.0"]["+links"]
    assert not [lk for lk in links if lk["rel"] == "toxresult"]

    # the background sweep writes it down (a changelog entry), not only readers computing it
    def swept():
        serial = int(env.server.api("GET", "/+api").headers["X-Devpi-Serial"])
        for s in range(serial, max(serial - 5, -1), -1):
            entry = env.server.api("GET", f"/+changelog/{s}").json()
            changes = (entry.get("result") or entry).get("changes") or []
            if any(c.get("kind") == "testrun" and c.get("op") == "interrupted" and c.get("run") == run["id"]
                   for c in changes):
                return True
        return False

    wait_for(swept, 60, "the sweep to mark the run interrupted")
