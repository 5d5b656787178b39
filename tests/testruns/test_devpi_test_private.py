"""`devpi test` on a read-restricted index (acl_read): the logged-in client downloads the
release, tox installs through the index with the login's credentials, results are stored;
the same without a login is refused in one line."""
from __future__ import annotations

import subprocess
import sys

from runsupport import TOX_INI

PASSING = "def test_ok():\n    pass\n"


def test_devpi_test_on_a_private_index(env):
    r = env.server.api("PUT", "/alice/secret", json={"bases": ["alice/dev"], "acl_read": ["alice"]},
                       auth=env.auth)
    assert r.status_code == 200, r.text
    href = env.upload_project("privtestpkg", {"tox.ini": TOX_INI, "tests/test_ok.py": PASSING},
                              index="alice/secret")["sdist"]
    assert env.server.api("GET", "/alice/secret/privtestpkg").status_code == 401  # private indeed
    proc = env.devpi("test", "--index", "alice/secret", "privtestpkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = env.runs("privtestpkg", index="alice/secret")
    assert run["status"] == "passed" and run["file"] == href

    # another client, not logged in: one line, no traceback
    other = env.tmp / "other-client"
    cmd = [sys.executable, "-m", "devpi.client", "--clientdir", str(other)]
    subprocess.run([*cmd, "use", f"{env.server.url}/alice/secret"], env=env.client_env(), check=True,
                   capture_output=True, text=True)
    proc = subprocess.run([*cmd, "test", "privtestpkg"], env=env.client_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "401" in proc.stderr or "not public" in proc.stderr, proc.stderr
