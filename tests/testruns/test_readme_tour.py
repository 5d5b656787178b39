"""The README's tour, pasted line by line into a fresh shell (issue 30): a fresh home (so a
fresh server dir and client dir), a plain setuptools project with a tox.ini and no
MANIFEST.in (setuptools leaves tox.ini out of the sdist), every line run as written but
for the port (a free one instead of 3141) and the project name. Each line must succeed.

The only additions are what a person at a terminal has anyway: the server's first start
is waited for before the next line, and the machine's pip points at a local upstream
index (holding setuptools and pytest) instead of the network."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests
from runsupport import NO_NETWORK
from support.ports import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
PROJECT = "tourpkg"


def tour_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = text.split("## A 5-minute tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = []
    for line in block.splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()  # the comments after the commands
        if command:
            lines.append(command)
    return lines


def write_setuptools_project(base: Path) -> Path:
    proj = base / PROJECT
    (proj / PROJECT).mkdir(parents=True)
    (proj / PROJECT / "__init__.py").write_text('VERSION = "1.0"\n')
    (proj / "tests").mkdir()
    (proj / "tests" / "test_it.py").write_text(f"import {PROJECT}\n\n\ndef test_version():\n"
                                               f"    assert {PROJECT}.VERSION == '1.0'\n")
    (proj / "setup.py").write_text(textwrap.dedent(f"""\
        from setuptools import setup

        setup(name="{PROJECT}", version="1.0", packages=["{PROJECT}"])
        """))
    (proj / "tox.ini").write_text("[testenv]\ndeps = pytest\ncommands = pytest tests\n")
    return proj


def test_the_readme_tour_runs_line_by_line(tmp_path, wheelhouse, bindir, upstream):
    for wheel in sorted(wheelhouse.glob("*.whl")):
        upstream.add_file(wheel.name.split("-")[0], wheel.name, wheel.read_bytes())
    home = tmp_path / "home"
    home.mkdir()
    project = write_setuptools_project(tmp_path / "src")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVPI_", "PIP_", "UV_", "TOX_"))}
    env.update(NO_NETWORK)
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PIP_INDEX_URL": upstream.url,
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_COMPILE": "1", "PYTHONUNBUFFERED": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{bindir}{os.pathsep}{os.environ['PATH']}"})
    server = None
    ran = []
    try:
        for line in tour_lines():
            line = line.replace("3141", str(port)).replace("yourproject", PROJECT)
            if line.endswith("&"):  # the server, started in the background as the tour does
                command = line[:-1].strip() + f" --port {port}"  # its default port is 3141
                server = subprocess.Popen(["bash", "-c", command], cwd=project, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          start_new_session=True)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if requests.get(f"http://127.0.0.1:{port}/+api", timeout=5).status_code == 200:
                            break
                    except requests.ConnectionError:
                        time.sleep(0.2)
                else:
                    raise AssertionError(f"the server of `{line}` did not answer: "
                                         f"{server.stdout.read1(65536).decode(errors='replace') if server.poll() is not None else ''}")
                ran.append(line)
                continue
            done = subprocess.run(["bash", "-c", line], cwd=project, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, (f"the tour's line `{line}` failed ({done.returncode}) after "
                                          f"{ran}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            assert "Traceback" not in done.stderr, done.stderr
            ran.append(line)
            if line.startswith("devpi list"):
                assert "tests passed" in done.stdout and f"{PROJECT} 1.0" in done.stdout, done.stdout
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    assert [shlex.split(line)[0] for line in ran][:2] == ["devpi", "devpi"] and len(ran) == len(tour_lines())
