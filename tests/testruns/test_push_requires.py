"""`push_requires`: a release is pushed from an index only with passing results where required."""
from __future__ import annotations

import sys

from runsupport import TOX_INI

SIMPLE = "def test_ok():\n    pass\n"


def push(env, src, name):
    return env.server.api("PUSH", f"/{src}", json={"name": name, "version": "1.0", "targetindex": "alice/prod"},
                          auth=env.auth)


def test_push_refused_without_passing_run_and_allowed_after(env):
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"  # tox's default env 'py' runs on tox's own interpreter
    env.server.create_index(env.auth, "gated", bases="alice/dev", push_requires=[sys.platform, py, "env:py"])
    env.server.create_index(env.auth, "prod")
    hrefs = env.upload_project("pushpkg", {"tox.ini": TOX_INI, "tests/test_p.py": SIMPLE}, index="alice/gated",
                               wheel=True)

    r = push(env, "alice/gated", "pushpkg")
    assert r.status_code == 409, r.text
    message = r.json()["message"]
    for req in (sys.platform, py, "env:py"):
        assert repr(req) in message

    proc = env.devpi("test", "--index", "alice/gated", "--select", r"\.whl$", "pushpkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = env.runs("pushpkg", index="alice/gated")
    assert run["status"] == "passed" and run["file"] == hrefs["wheel"]

    # a passing run here does not meet a requirement for another platform
    r = env.server.api("PATCH", "/alice/gated", json=["push_requires+=win32"], auth=env.auth)
    assert r.status_code == 200, r.text
    r = push(env, "alice/gated", "pushpkg")
    assert r.status_code == 409
    assert "'win32'" in r.json()["message"] and f"'{py}'" not in r.json()["message"]

    r = env.server.api("PATCH", "/alice/gated", json=["push_requires-=win32"], auth=env.auth)
    assert r.status_code == 200, r.text
    r = push(env, "alice/gated", "pushpkg")
    assert r.status_code == 200, r.text
    # the runs travel with the files they belong to
    [copied] = env.runs("pushpkg", index="alice/prod")
    assert copied["status"] == "passed"
    assert copied["file"] == hrefs["wheel"].replace("/alice/gated/", "/alice/prod/")


def test_push_requires_config_is_validated(env):
    r = env.server.api("PUT", "/alice/badreq", json={"push_requires": ["py3x"]}, auth=env.auth)
    assert r.status_code == 400
    assert "py3x" in r.json()["message"]
    r = env.server.api("PUT", "/alice/defaults", json={}, auth=env.auth)
    assert r.json()["result"]["push_requires"] == []
