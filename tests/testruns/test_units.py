"""The pure parts: requirement parsing and matching, report reading, the `devpi list` matrix."""
from __future__ import annotations

import os

import pytest
from devpi.client.testing_summary import format_matrix, matrix
from devpi.server.store.indexconfig import ConfigError
from devpi.server.testruns.gate import EnvResult, env_passed, env_results, missing, normalize_requirements

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


CONFIGS = {
    "tox.ini": "[tox]\nenv_list = a, b\n[testenv]\ncommands = python -c 'print(1)'\n"
               "[testenv:b]\npass_env = OTHER\n",
    "tox.toml": 'env_list = ["a", "b"]\n[env_run_base]\ncommands = [["python", "-c", "print(1)"]]\n'
                '[env.b]\npass_env = ["OTHER"]\n',
    "pyproject.toml": '[tool.tox]\nenv_list = ["a", "b"]\n[tool.tox.env_run_base]\n'
                      'commands = [["python", "-c", "print(1)"]]\n[tool.tox.env.b]\npass_env = ["OTHER"]\n',
    "setup.cfg": "[tox:tox]\nenv_list = a, b\n[testenv]\ncommands = python -c 'print(1)'\n"
                 "[testenv:b]\npass_env = OTHER\n",
}


@pytest.mark.parametrize("filename", sorted(CONFIGS))
def test_injected_variables_pass_through_every_env(tmp_path, filename):
    """What tox itself resolves: the plugin's variables reach envs with and without their own pass_env."""
    import subprocess
    import sys

    from devpi.client.testing_runner import INJECTED_VARS, env_names, find_config, overrides

    (tmp_path / filename).write_text(CONFIGS[filename])
    config = find_config(tmp_path, None)
    assert config.name == filename
    tox = [sys.executable, "-m", "tox"]
    names = env_names(tox, config, tmp_path, dict(os.environ), [])
    assert "b" in names
    proc = subprocess.run([*tox, "config", "-c", str(config), "-e", "a,b", "-k", "pass_env",
                           *overrides(names, config, None)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sections = proc.stdout.split("[testenv:")[1:]
    assert [s.split("]")[0] for s in sections] == ["a", "b"]
    for section in sections:
        for var in INJECTED_VARS:
            assert var in section, section
    assert "OTHER" in sections[1]


def test_event_batches_stay_under_the_servers_body_limit():
    """500 failures with 20,000-character tracebacks (non-ASCII, escaped 6x on the wire) made
    a 10+ MB batch; the server takes test-run bodies up to 2 MiB, so a batch ends at ~1 MiB."""
    import json
    import queue

    from devpi.client.testing_reporter import MAX_BATCH_BYTES, RunReporter
    from devpi.server.api.httpkit import MAX_TOX_REPORT_BYTES

    reporter = RunReporter.__new__(RunReporter)  # only the queue matters for batching
    reporter.queue = queue.Queue()
    for i in range(500):
        reporter.queue.put({"nodeid": f"t.py::test_{i}", "outcome": "failed", "longrepr": "\u00e9" * 20_000})
    batch = [reporter.queue.get()]
    assert reporter._drain(batch, 0.5) is False
    body = json.dumps({"key": "k" * 40, "events": batch}).encode()
    assert MAX_BATCH_BYTES <= len(body) < MAX_TOX_REPORT_BYTES
    assert 1 < len(batch) < 500
