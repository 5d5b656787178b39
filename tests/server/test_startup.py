"""Start-up: one server per server dir, root's password, loopback-only without one, clean shutdown."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from support.dists import wheel_bytes
from support.server import DEAD_UPSTREAM, ServerProcess


class NoRootPasswd(ServerProcess):
    """A server started the way a user does on first try: no --root-passwd."""

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--root-passwd")
        return cmd[:i] + cmd[i + 2:]


def run_server(*args: str) -> subprocess.CompletedProcess:
    """A server start expected to be refused: it must exit at once."""
    return subprocess.run([sys.executable, "-m", "devpi.server", "--port", "0", "--mirror-url", DEAD_UPSTREAM,
                           *args], capture_output=True, text=True, timeout=60)


def assert_one_line_refusal(p: subprocess.CompletedProcess, text: str) -> None:
    assert p.returncode != 0
    assert text in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert [line for line in p.stderr.splitlines() if text in line][0].startswith("devpi server: ")


def test_second_server_on_same_dir_is_refused(make_server):
    s = make_server()
    p = run_server("--serverdir", str(s.serverdir))
    assert_one_line_refusal(p, f"is already running on {s.serverdir}")
    assert f"(pid {s.proc.pid})" in p.stderr
    assert s.api("GET", "/+api").status_code == 200  # the first one is unharmed


def test_root_password_option(make_server):
    s = make_server(root_password="sekrit")
    assert s.api("POST", "/+login", json={"user": "root", "password": "sekrit"}).status_code == 200
    assert s.api("POST", "/+login", json={"user": "root", "password": ""}).status_code == 401
    # it is root's *initial* password: a restart with another value changes nothing
    s.stop()
    s.root_password = "other"
    s.start()
    assert s.api("POST", "/+login", json={"user": "root", "password": "sekrit"}).status_code == 200
    assert s.api("POST", "/+login", json={"user": "root", "password": "other"}).status_code == 401


def test_empty_root_password_only_on_loopback(tmp_path):
    serverdir = tmp_path / "open"
    s = NoRootPasswd(serverdir).start()
    try:
        assert s.api("POST", "/+login", json={"user": "root", "password": ""}).status_code == 200
    finally:
        assert s.stop() == 0
    p = run_server("--serverdir", str(serverdir), "--host", "0.0.0.0")
    assert_one_line_refusal(p, "root has an empty password; refusing to listen on 0.0.0.0")
    # a fresh server dir without a password is refused too
    p = run_server("--serverdir", str(tmp_path / "fresh"), "--host", "0.0.0.0")
    assert_one_line_refusal(p, "root has an empty password")
    # once root has a password, any address is fine
    s.start()
    root = s.login("root", "")
    assert s.api("PATCH", "/root", json={"password": "now-set"}, auth=root).status_code == 200
    s.stop()
    wide = ServerProcess(serverdir, args=("--host", "0.0.0.0")).start()  # the last --host wins
    try:
        r = requests.get(f"http://127.0.0.1:{wide.port}/+api", timeout=30)
        assert r.status_code == 200
    finally:
        assert wide.stop() == 0


def test_sigterm_and_ctrl_c_shut_down_cleanly(make_server):
    s = make_server()
    assert s.stop() == 0
    assert "Traceback" not in s.log_text()
    s.start()
    assert s.api("GET", "/+api").status_code == 200
    s.proc.send_signal(signal.SIGINT)
    assert s.wait_exit(30) == 0
    assert "Traceback" not in s.log_text()
    assert "devpi server stopped (SIGTERM" in s.log_text() and "devpi server stopped (SIGINT" in s.log_text()
    # and the dir is free again: a new server starts on it
    s.start()
    assert s.api("GET", "/+api").status_code == 200


def test_sigterm_lets_a_request_in_flight_finish_then_stops_within_the_bound(make_server):
    """An upload whose body is still arriving when SIGTERM comes is answered (200, stored);
    the server then exits within 5 s of the signal and its log says it stopped."""
    s = make_server()
    auth = s.login("root", "root")
    assert s.api("PUT", "/root/flight", json={"type": "stage", "bases": []}, auth=auth).status_code == 200
    filename, data = wheel_bytes("inflight", "1.0")
    prepared = requests.Request("POST", f"{s.url}/root/flight/", auth=auth, files={"content": (filename, data)},
                                data={":action": "file_upload", "name": "inflight", "version": "1.0"}).prepare()
    head = "POST /root/flight/ HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in prepared.headers.items()) + "\r\n"
    body = prepared.body
    conn = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    conn.sendall(head.encode() + body[:len(body) // 2])
    time.sleep(0.3)  # the view runs and waits for the rest of the body
    signalled = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)  # a second into the stop, the rest arrives (GRACE is 3 s)
    conn.sendall(body[len(body) // 2:])
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(65536)
        assert chunk, answer
        answer += chunk
    conn.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert s.wait_exit(10) == 0
    assert time.monotonic() - signalled < 5.0
    log = s.log_text()
    assert "devpi server stopped (SIGTERM" in log and "Traceback" not in log
    s.start()  # the upload was stored
    r = requests.get(f"{s.url}/root/flight/+simple/inflight/", timeout=30)
    assert filename in r.text


def test_a_download_cut_by_a_stop_ends_as_incomplete_so_clients_retry(make_server):
    """A download still running when the server stops must not end looking complete (pip
    would then report "THESE PACKAGES DO NOT MATCH THE HASHES"): the client sees the
    connection end before Content-Length bytes, which pip and uv retry."""
    s = make_server()
    auth = s.login("root", "root")
    assert s.api("PUT", "/root/big", json={"type": "stage", "bases": []}, auth=auth).status_code == 200
    filename, data = wheel_bytes("bigdl", "1.0", module_body="X = " + repr(os.urandom(12 << 20).hex()))
    r = requests.post(f"{s.url}/root/big/", data={":action": "file_upload", "name": "bigdl", "version": "1.0"},
                      files={"content": (filename, data)}, auth=auth, timeout=120)
    assert r.status_code == 200, r.text
    href = requests.get(f"{s.url}/root/big/+simple/bigdl/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                        timeout=30).json()["files"][0]["url"]
    url = requests.compat.urljoin(f"{s.url}/root/big/+simple/bigdl/", href)
    got = 0
    with requests.get(url, stream=True, timeout=30) as resp:
        assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == len(data)
        chunks = resp.raw.stream(256 << 10, decode_content=False)
        got += len(next(chunks))
        s.proc.send_signal(signal.SIGTERM)
        with pytest.raises(Exception) as cut:  # urllib3's ProtocolError/IncompleteRead, however wrapped
            for chunk in chunks:
                got += len(chunk)
                time.sleep(0.1)  # a slow client: ~2.5 MB/s, far longer than the stop's grace (3 s)
    assert got < len(data)
    assert "IncompleteRead" in repr(cut.value) or "Connection broken" in str(cut.value), repr(cut.value)
    assert s.wait_exit(10) == 0


def test_sigint_stops_a_server_a_shell_started_in_the_background(make_server, tmp_path):
    """``devpi server &`` in a script: the shell starts it with SIGINT ignored (POSIX, for
    background jobs without job control). SIGINT stops it all the same, cleanly."""
    premise = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    sleeper = int(premise.stdout.readline())
    # `echo $!` may run before the forked child has set its signals and exec'd `sleep`: read
    # the dispositions of `sleep` itself (under load the fork was seen still on its way)
    deadline = time.monotonic() + 10
    while not open(f"/proc/{sleeper}/cmdline", "rb").read().startswith(b"sleep") and time.monotonic() < deadline:
        time.sleep(0.01)
    ignored = int(next(line for line in open(f"/proc/{sleeper}/status") if line.startswith("SigIgn:")).split()[1], 16)
    os.kill(sleeper, signal.SIGKILL)
    premise.wait()
    assert ignored & (1 << (signal.SIGINT - 1)), "the shell did not start its background job with SIGINT ignored"
    s = make_server()
    s.stop()
    out, err = tmp_path / "bg.out", tmp_path / "bg.err"
    out.touch()
    script = f"{shlex.join(s.command())} >{out} 2>{err} & echo $!; wait"
    shell = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    pid = int(shell.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert requests.get(f"{s.url}/+api", timeout=30).status_code == 200
        os.kill(pid, signal.SIGINT)
        assert shell.wait(10) == 0  # `wait` returns once the server exited (0: cleanly)
    finally:
        if shell.poll() is None:
            os.kill(pid, signal.SIGKILL)
            shell.wait()
    log = err.read_text()
    assert "devpi server stopped (SIGINT" in log and "Traceback" not in log, log[-3000:]


def test_sigusr2_writes_every_threads_stack_to_the_log_and_the_server_goes_on(server):
    server.proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while "Current thread" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log_text()
    assert "Current thread" in log and "base_events.py" in log  # the main thread, in the event loop
    assert log.count("Thread 0x") >= 32  # the worker threads too
    assert server.api("GET", "/+api").status_code == 200


def test_mirror_policy_options_are_read_at_start(tmp_path):
    """An entry of the mirror policy options the server cannot read stops the start with a
    message, rather than failing the first mirror someone creates."""
    for option, value in (("--mirror-allow-hosts", "a b"), ("--mirror-allow-hosts", "user@host"),
                          ("--mirror-file-hosts", "10.0.0.0/8")):
        p = run_server("--serverdir", str(tmp_path / "x"), option, value)
        assert p.returncode == 2 and "not a host[:port]" in p.stderr, p.stderr


@pytest.mark.parametrize("option, value", [
    ("--threads", "0"), ("--upstream-threads", "0"), ("--max-long-polls", "0"), ("--max-connections", "-5"),
    ("--threads", "two"), ("--connection-timeout", "0"), ("--connection-timeout", "nan"),
    ("--connection-timeout", "inf"), ("--request-timeout", "-1"), ("--mirror-download-timeout", "nan"),
])
def test_counts_and_timeouts_must_be_positive(tmp_path, option, value):
    """0 threads made a lane that never answers (every request hung), a timeout of 0 or nan
    closed every connection at once or never. The start is refused with one line naming the
    option, exit status 2, before anything is created."""
    try:
        p = subprocess.run([sys.executable, "-m", "devpi.server", "--port", "0", "--mirror-url", DEAD_UPSTREAM,
                            "--serverdir", str(tmp_path / "x"), option, value],
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{option} {value}: the server started instead of refusing the value")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    line = [line for line in p.stderr.splitlines() if "error:" in line]
    assert len(line) == 1 and line[0].startswith("devpi server: ") and option in line[0], p.stderr
    assert repr(value) in line[0] and ("at least 1" in line[0] or "above 0" in line[0]), p.stderr
    assert not (tmp_path / "x").exists()
