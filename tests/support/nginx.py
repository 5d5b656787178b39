"""A real nginx in a temp dir on a free port, around a site ``devpi gen-config`` wrote.

No root needed: every path nginx writes is under the temp dir. A missing nginx is a skip
on a developer's machine and a failure on CI (where .ci/run installs it).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
DEVPI = str(Path(sys.executable).parent / "devpi")


def gen_config(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DEVPI, "gen-config", *args], capture_output=True, text=True, timeout=60)


def missing(what: str) -> None:
    """A tool this machine lacks: a skip on a developer's machine, a failure on CI (where
    .ci/run installs it, so its absence means the check silently stopped running)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing on CI (.ci/run installs it)")
    pytest.skip(f"no {what} on this machine (apt-get install it; .ci/run does)")


def need_nginx() -> str:
    if NGINX is None:
        missing("nginx")
    return NGINX


def nginx_conf(tmp: Path, site: Path) -> Path:
    """A main nginx.conf around the generated site, everything in ``tmp`` (no root needed)."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / sub).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text("\n".join([
        "user root;" if os.geteuid() == 0 else "",  # workers may read the temp dir
        "worker_processes 1;", "daemon off;", f"pid {tmp}/nginx.pid;", f"error_log {tmp}/logs/main-error.log;",
        "events { worker_connections 256; }",
        "http {",
        f"  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;",
        f"  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;",
        f"  include {site};",
        "}", ""]))
    return conf


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([need_nginx(), "-t", "-c", str(conf), "-p", str(conf.parent)], capture_output=True,
                          text=True, timeout=60)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "nginx exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@contextlib.contextmanager
def running_nginx(conf: Path, port: int) -> Iterator[subprocess.Popen]:
    """nginx with ``conf`` (checked by ``nginx -t`` first), stopped when the block ends."""
    t = nginx_test(conf)
    assert t.returncode == 0, t.stderr
    proc = subprocess.Popen([need_nginx(), "-c", str(conf), "-p", str(conf.parent)], stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def wait_for_logged(log: Path, text: str, timeout: float = 15) -> str:
    """The access log once it holds ``text``: the generated site writes it in buffered
    batches (every second), so a request just answered may not be in it yet."""
    deadline = time.monotonic() + timeout
    while True:
        content = log.read_text() if log.exists() else ""
        if text in content:
            return content
        assert time.monotonic() < deadline, f"nginx never logged {text!r}"
        time.sleep(0.2)
