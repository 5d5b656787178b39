"""Done-when of issue 25: the example plugin installs into the server's environment with pip,
counts uploads on GET /+hello, and uninstalling it removes the route."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import requests
from plugin_helpers import pip
from support.dists import write_wheel

EXAMPLE = Path(__file__).parents[2] / "doc" / "examples" / "plugin-hello"


def _hello(server) -> requests.Response:
    return requests.get(server.url + "/+hello", headers={"Accept": "application/json"}, timeout=30)


def _wait_for_count(server, n: int, timeout: float = 15) -> dict:
    """Events reach plugins just after the commit (server/plugins.py), so the count may lag
    the upload's answer by a moment; it must reach n and not pass it."""
    deadline = time.monotonic() + timeout
    while True:
        r = _hello(server)
        assert r.status_code == 200, r.text
        doc = r.json()
        if doc["uploads"] >= n or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def test_example_plugin_counts_uploads_and_goes_with_uninstall(server_env, env_servers, tmp_path):
    source = tmp_path / "plugin-hello"
    shutil.copytree(EXAMPLE, source)  # pip builds in the source tree: keep the repo's clean
    done = pip(server_env, "install", "-q", str(source))
    assert done.returncode == 0, done.stderr

    s = env_servers(server_env)
    assert _hello(s).json() == {"uploads": 0}
    auth = s.create_user("alice", "pw")
    s.create_index(auth, "dev")
    for version in ("1.0", "1.1"):
        wheel = write_wheel(tmp_path, "hello-demo", version)
        r = s.upload("alice/dev", wheel, auth)
        assert r.status_code == 200, r.text
    assert _wait_for_count(s, 2) == {"uploads": 2}
    time.sleep(0.3)
    assert _hello(s).json() == {"uploads": 2}
    version = subprocess.run([str(server_env), "-m", "devpi.server", "--version"], capture_output=True, text=True,
                             timeout=120)
    assert version.stdout.strip().endswith("(plugins: devpi-plugin-hello 0.1.0)"), version
    status = s.api("GET", "/+status").json()["result"]["plugins"]
    assert [(p["name"], p["dist"]) for p in status["loaded"]] == [("hello", "devpi-plugin-hello")]
    s.stop()

    done = pip(server_env, "uninstall", "-y", "devpi-plugin-hello")
    assert done.returncode == 0, done.stderr
    s.start()
    r = _hello(s)
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"message": "not found: /+hello"}
    assert s.api("GET", "/+status").json()["result"]["plugins"] == {"loaded": [], "failed": []}
