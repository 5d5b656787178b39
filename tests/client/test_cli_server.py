"""``devpi server``: the server runs in the CLI's own process, with the server's options,
exit codes and signals (the start-up no longer pays for a second interpreter)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import requests
from clienthelpers import devpi_command
from support.server import DEAD_UPSTREAM

LISTENING = re.compile(r"listening on (http://\S+)")


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    out = tmp_path / "server.out"
    env = {**os.environ, "no_proxy": "127.0.0.1,localhost", "http_proxy": "http://127.0.0.1:9"}
    with open(out, "wb") as f:
        proc = subprocess.Popen([*devpi_command(), "server", "--serverdir", str(tmp_path / "srv"), "--port", "0",
                                 "--mirror-url", DEAD_UPSTREAM, "--root-passwd", "pw", *args],
                                stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = LISTENING.search(out.read_text(errors="replace"))
        if m:
            return proc, m.group(1), out
        assert proc.poll() is None, out.read_text()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no 'listening on' line:\n{out.read_text()}")


def children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def test_devpi_server_serves_from_the_cli_process_and_stops_cleanly(tmp_path):
    proc, url, out = start(tmp_path, "--threads", "3")
    try:
        assert requests.get(f"{url}/+api", timeout=30).status_code == 200
        r = requests.post(f"{url}/+login", json={"user": "root", "password": "pw"}, timeout=30)
        assert r.status_code == 200  # --root-passwd reached the server
        # the process started as `devpi server ...` is the server: no second interpreter
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"server" in cmdline and b"devpi.server" not in cmdline, cmdline
        assert children(proc.pid) == []
        threads = {p.name for p in Path(f"/proc/{proc.pid}/task").iterdir()}
        assert len(threads) >= 3  # the event loop, the log writer, the workers of --threads 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert "Traceback" not in out.read_text()
    assert "shutting down" in out.read_text()

    proc, url, out = start(tmp_path)  # the same dir again: the lock was released; Ctrl-C stops it
    try:
        assert requests.get(f"{url}/+api", timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert "Traceback" not in out.read_text()


def test_devpi_server_refusals_keep_the_servers_message_and_exit_code(devpi, tmp_path):
    r = devpi.run("server", "--serverdir", str(tmp_path / "x"), "--threads", "0")
    assert r.rc == 2 and "Traceback" not in r.err
    assert [line for line in r.err.splitlines() if "error:" in line][0].startswith("devpi server: ")
    assert not (tmp_path / "x").exists()

    proc, url, _ = start(tmp_path)
    try:  # a second server on the same dir: the server's SystemExit message, status 1
        r = devpi.run("server", "--serverdir", str(tmp_path / "srv"), "--port", "0", "--mirror-url", DEAD_UPSTREAM)
        assert r.rc == 1 and "Traceback" not in r.err, r.err
        assert f"devpi server: another server (pid {proc.pid}) is already running on {tmp_path / 'srv'}" \
            in r.err.splitlines()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_devpi_server_version_is_the_servers(devpi):
    from devpi.server import __version__

    assert devpi.ok("server", "--version").strip() == f"devpi server {__version__}"
