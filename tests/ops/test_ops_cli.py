"""The admin commands fail in one readable line: no traceback, no credentials."""
from __future__ import annotations

import subprocess
import sys

import pytest
from support.ports import free_port


def devpi(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devpi.client", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["export", "fsck", "gc"])
def test_missing_server_dir_is_one_line(command, tmp_path):
    args = [command, "--serverdir", str(tmp_path / "nothing")] + ([str(tmp_path / "out")] if command == "export" else [])
    p = devpi(*args)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"devpi: error: no server dir at {tmp_path / 'nothing'} (no devpi.sqlite)"]
    assert not (tmp_path / "nothing").exists()  # an admin command never creates a server dir


@pytest.mark.parametrize("command", ["export", "fsck", "gc"])
def test_unreachable_database_is_one_line_without_the_password(command, tmp_path):
    url = f"postgresql://devpi:s3cret-pw@127.0.0.1:{free_port()}/devpi"
    args = [command, "--serverdir", str(tmp_path / "s"), "--storage", url]
    p = devpi(*args, *([str(tmp_path / "out")] if command == "export" else []))
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"devpi {command}: error: OperationalError: "), p.stderr
    assert "s3cret-pw" not in p.stderr and "Traceback" not in p.stderr
