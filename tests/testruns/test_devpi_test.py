"""`devpi test` for real: tox runs the uploaded sdist offline against the server, results stream live."""
from __future__ import annotations

import json
import socket

import requests
from runsupport import TOX_INI, two_pythons

# A test of the tested project that passes only once the server shows the result of the
# test before it: proof that results stream while tox (and pytest) are still running.
WAITS_FOR_STREAM = '''
import json, time, urllib.request

def test_first():
    pass

def test_second_sees_first_on_server():
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.time() + 60
    while time.time() < deadline:
        with opener.open("{url}/{index}/{name}/1.0/+testruns?events") as r:
            runs = json.load(r)["result"]
        seen = [e["nodeid"] for run in runs if run["status"] == "running" for e in run["events"]]
        if any(n.endswith("::test_first") for n in seen):
            return
        time.sleep(0.2)
    raise AssertionError("test_first's result did not reach the server while the tests ran")
'''

FAILING = '''
def test_good():
    pass

def test_bad():
    assert 1 == 2, "deliberately broken"
'''


def streaming_project(env, name):
    src = WAITS_FOR_STREAM.replace("{url}", env.server.url).replace("{index}", env.index).replace("{name}", name)
    return {"tox.ini": TOX_INI, "tests/test_stream.py": src}


def test_passing_project_streams_results_before_tox_ends(env):
    href = env.upload_project("passpkg", streaming_project(env, "passpkg"))["sdist"]
    proc = env.devpi("test", "passpkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sha256 verified" in proc.stdout

    [run] = env.runs("passpkg", events=True)
    assert run["status"] == "passed"
    assert run["file"] == href
    assert run["exitcode"] == 0
    assert run["envs"]["py"]["status"] == "passed"
    assert run["counts"] == {"passed": 2}
    nodeids = [e["nodeid"] for e in run["events"]]
    assert nodeids == ["tests/test_stream.py::test_first", "tests/test_stream.py::test_second_sees_first_on_server"]
    # both events arrived at the server before the run was finished
    assert all(e["received"] < run["finished"] for e in run["events"])
    assert all(e["env"] == "py" for e in run["events"])

    # the classic devpi toxresult is attached to the tested file, as devpi stores it
    links = env.server.api("GET", f"/{env.index}/passpkg").json()["result"]["1.0"]["+links"]
    [tox_link] = [lk for lk in links if lk["rel"] == "toxresult"]
    assert tox_link["for_href"] == href
    assert run["toxresult"] == tox_link["href"]
    report = json.loads(requests.get(tox_link["href"], timeout=30).content)
    assert report["testenvs"]["py"]["result"]["success"] is True
    assert report["host"] == run["host"] == socket.gethostname()  # tox's getfqdn() may say "localhost"

    # `devpi list` shows the classic result and the env x platform matrix
    listing = env.devpi("list", "passpkg", check=True).stdout
    assert "tests passed" in listing
    header, row = [line.split() for line in listing.splitlines() if line.strip().startswith(("tests ", "py "))]
    assert header == ["tests", run["platform"]]
    assert row == ["py", f"(py{'.'.join(run['python'].split('.')[:2])})", "passed"]


def test_failing_project_exit_code_and_failure_text(env):
    env.upload_project("failpkg", {"tox.ini": TOX_INI, "tests/test_f.py": FAILING}, wheel=True)
    proc = env.devpi("test", "--select", r"\.whl$", "failpkg")  # a wheel: no sdist build, faster
    assert proc.returncode == 1, proc.stdout + proc.stderr

    [run] = env.runs("failpkg", events=True)
    assert run["status"] == "failed"
    assert run["exitcode"] == 1
    assert run["envs"]["py"]["status"] == "failed"
    assert run["counts"] == {"passed": 1, "failed": 1}
    [bad] = [e for e in run["events"] if e["outcome"] == "failed"]
    assert bad["nodeid"].endswith("::test_bad")
    assert "deliberately broken" in bad["longrepr"]
    assert bad["duration"] is not None


def test_two_envs_on_two_pythons(env, pythons):
    first, second = two_pythons(pythons)
    envs = [f"py{v.replace('.', '')}" for v in (first, second)]
    ini = f"[tox]\nenv_list = {', '.join(envs)}\n" + TOX_INI + f"[testenv:{envs[1]}]\npass_env = SOMETHING_ELSE\n"
    files = {"tox.ini": ini, "tests/test_v.py": "import sys\n\ndef test_version():\n    assert sys.version_info >= (3, 8)\n"}
    env.upload_project("twoenv", files, wheel=True)
    proc = env.devpi("test", "--select", r"\.whl$", "twoenv")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    [run] = env.runs("twoenv", events=True)
    assert run["status"] == "passed"
    assert set(run["envs"]) == set(envs)
    for name, version in zip(envs, (first, second), strict=True):
        assert run["envs"][name]["status"] == "passed"
        assert run["envs"][name]["python"].startswith(version + ".")
        # the second env has its own pass_env: the results stream from it all the same
        [event] = [e for e in run["events"] if e["env"] == name]
        assert event["python"].startswith(version + ".")
        assert event["outcome"] == "passed"
