"""`devpi test --tx`: the same release tested on several execnet gateways at once."""
from __future__ import annotations

from runsupport import TOX_INI, two_pythons

REPORTS_PYTHON = "import sys\n\ndef test_python():\n    print(sys.version)\n"


def test_two_popen_gateways_with_different_pythons(env, pythons):
    first, second = two_pythons(pythons)
    href = env.upload_project("gwpkg", {"tox.ini": TOX_INI, "tests/test_g.py": REPORTS_PYTHON})["sdist"]
    specs = [f"popen//python={pythons[first]}", f"popen//python={pythons[second]}"]
    proc = env.devpi("test", "--tx", specs[0], "--tx", specs[1], "gwpkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[gw0]" in proc.stdout and "[gw1]" in proc.stdout

    runs = env.runs("gwpkg", events=True)
    assert len(runs) == 2
    assert {run["file"] for run in runs} == {href}  # both attached to the same file
    by_python = {run["python"].rsplit(".", 1)[0]: run for run in runs}
    assert set(by_python) == {first, second}
    for version, run in by_python.items():
        assert run["status"] == "passed", run
        assert run["label"] == f"popen//python={pythons[version]}"
        assert run["host"] and run["platform"]
        # tox on that gateway tested with that gateway's interpreter
        assert run["envs"]["py"]["python"].startswith(version + ".")
        [event] = run["events"]
        assert event["python"].startswith(version + ".") and event["outcome"] == "passed"
        assert run["toxresult"]


def test_failing_gateway_spec_is_one_line(env):
    env.upload_project("gwbad", {"tox.ini": TOX_INI, "tests/test_g.py": REPORTS_PYTHON})
    proc = env.devpi("test", "--tx", "popen//python=/nonexistent/python3", "gwbad")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "cannot start gateway" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
