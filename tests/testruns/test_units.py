"""The pure parts: requirement parsing and matching, report reading, the `devpi list` matrix."""
from __future__ import annotations

import pytest
from devpi.client.testing_summary import format_matrix, matrix
from devpi.server.indexconfig import ConfigError
from devpi.server.testruns_gate import EnvResult, env_passed, env_results, missing, normalize_requirements

TOX4_REPORT = {
    "platform": "linux", "host": "h",
    "testenvs": {
        ".pkg": {"result": {"success": True}},
        "py311": {"python": {"version_info": [3, 11, 7, "final", 0]}, "result": {"success": True}},
        "py312": {"python": {"version_info": [3, 12, 1, "final", 0]}, "result": {"success": False}},
        "skipped": {"python": {"version_info": [3, 13, 0]}, "result": {"success": True, "skipped": True}},
    },
}


def test_requirements_are_normalised_and_checked():
    assert normalize_requirements("linux, py312,env:py311,linux") == ["linux", "py312", "env:py311"]
    assert normalize_requirements(["py3.12", "win32"]) == ["py3.12", "win32"]
    for bad in (["py3x"], ["env:"], ["Linux!"], "pypy"):
        with pytest.raises(ConfigError):
            normalize_requirements(bad)


def test_requirements_met_only_by_passing_envs():
    results = env_results(TOX4_REPORT)
    assert [r.env for r in results] == ["py311", "py312", "skipped"]  # tox's packaging envs are not tests
    assert missing(["linux", "py311", "py3.11", "py3", "env:py311"], results) == []
    # py312 ran but failed; a skipped env passed nothing; darwin never ran
    assert missing(["py312", "env:py312", "py313", "env:skipped", "darwin"], results) == [
        "py312", "env:py312", "py313", "env:skipped", "darwin"]


def test_reports_of_the_original_devpi_client_count_too():
    legacy_ok = {"setup": [{"retcode": 0}], "test": [{"retcode": "0"}]}
    assert env_passed(legacy_ok)
    assert not env_passed({"setup": [{"retcode": 0}], "test": [{"retcode": 1}]})
    assert not env_passed({"setup": [{"retcode": 0}], "test": []})  # nothing was tested
    result = EnvResult("py", "win32", "3.12.1", True)
    assert missing(["win32", "py312"], [result]) == []


def test_list_matrix_newest_run_wins():
    runs = [
        {"started": 1, "platform": "linux", "status": "failed", "python": "3.12.1",
         "envs": {"py": {"python": "3.12.1", "status": "failed"}}},
        {"started": 2, "platform": "linux", "status": "passed", "python": "3.12.1",
         "envs": {"py": {"python": "3.12.1", "status": "passed"}}},
        {"started": 3, "platform": "win32", "status": "running", "python": "3.12.1", "envs": {}},
        {"started": 4, "platform": "linux", "status": "interrupted", "python": "3.13.0",
         "envs": {"py": {"python": "3.13.0", "status": "interrupted"}}},
    ]
    cells = matrix(runs)
    assert cells == {("?", "3.12"): {"win32": "running"}, ("py", "3.12"): {"linux": "passed"},
                     ("py", "3.13"): {"linux": "interrupted"}}
    lines = format_matrix(cells)
    assert lines[0].split() == ["tests", "linux", "win32"]
    assert lines[2].split() == ["py", "(py3.12)", "passed", "-"]
