"""Transport attacks: connection floods, slow clients, held threads, unwanted bodies.

Findings 1, 6 and the transport half of 13 of the hardening issue. The attacker
has no account; they open many sockets, send requests slowly or never finish
them, park long-polls, point a mirror at an upstream that never answers (and
push from it), or push a huge or never-ending (chunked) body at an upload URL. What must hold: the process stays up, a new
client's ``GET /+api`` is answered within a second throughout, every wait is
bounded, and a refused body is never written anywhere.
"""
from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

PARTIAL_HEAD = b"GET /+api HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module", autouse=True)
def many_files() -> Iterator[None]:
    """Lift this process's open-file soft limit to the hard one; the servers inherit it, so a
    select()-based server would meet descriptors above 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < 2400:
        pytest.fail(f"the open-file hard limit ({hard}) is too low for this test module")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def plain(sec_servers):
    """A server with default options, shared by the tests that leave nothing behind."""
    return sec_servers()


def api_time(s) -> float:
    """Seconds a fresh client waits for ``GET /+api`` (fails on anything but 200)."""
    t0 = time.monotonic()
    r = requests.get(f"{s.url}/+api", timeout=10)
    assert r.status_code == 200, r.text
    return time.monotonic() - t0


def open_sockets(s, n: int, payload: bytes = b"") -> list[socket.socket]:
    socks = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        if payload:
            c.sendall(payload)
        socks.append(c)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for c in socks:
        c.close()


def read_response(c: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response on a raw socket, within `timeout` seconds."""
    c.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = c.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(c: socket.socket, timeout: float) -> bool:
    """True when the server closed (or reset) this connection within `timeout` seconds; an
    answer it wrote first (408, 503) is read and skipped."""
    c.settimeout(timeout)
    try:
        while c.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_connection_flood_above_fd_1024_keeps_serving(sec_servers):
    """Attacker: ~1,100 sockets each sending a request head that never ends, with the open-file
    limit above 1024 (a select() loop crashes on descriptor 1025). Must hold: the process stays
    up and a new client's GET /+api is answered within 1 s while they are all open."""
    s = sec_servers()
    socks = open_sockets(s, 1100, PARTIAL_HEAD)
    try:
        time.sleep(1)  # every one accepted and read by now
        assert max(api_time(s) for _ in range(3)) < 1.0
        assert s.proc.poll() is None
    finally:
        close_all(socks)
    assert api_time(s) < 1.0


def test_idle_and_partial_connections_are_timed_out(sec_servers):
    """Attacker: opens connections that send nothing, or half a request head, or trickle the head
    a byte at a time, and keeps them open forever. Must hold: each is closed once the
    connection timeout (here 2 s) has passed, however it trickles."""
    s = sec_servers(args=("--connection-timeout", "2"))
    silent = open_sockets(s, 20)
    partial = open_sockets(s, 20, PARTIAL_HEAD)
    trickler = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    t0 = time.monotonic()
    try:
        for byte in PARTIAL_HEAD * 3:  # a byte every 0.1 s: never idle for long
            try:
                trickler.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
        assert time.monotonic() - t0 < 12
        assert all(closed_by_server(c, 6) for c in silent + partial + [trickler])
        assert api_time(s) < 1.0
    finally:
        close_all(silent + partial + [trickler])


def test_partial_head_gets_json_408(sec_servers):
    """Attacker: half a request head. Must hold: after the timeout the server says 408 as JSON
    (a transport-level error like every other) and closes."""
    s = sec_servers(args=("--connection-timeout", "1"))
    c = open_sockets(s, 1, PARTIAL_HEAD)[0]
    try:
        status, headers, body = read_response(c, 5)
        assert status == 408 and headers["content-type"].startswith("application/json")
        assert "request head" in json.loads(body)["message"]
    finally:
        c.close()


def test_connection_count_is_bounded(sec_servers):
    """Attacker: more half-open connections than --max-connections allows. Must hold: the
    process stays up, the connections beyond the bound are closed (the longest waiting first),
    and a new client is still answered within 1 s."""
    s = sec_servers(args=("--max-connections", "50", "--connection-timeout", "60"))
    socks = open_sockets(s, 150, PARTIAL_HEAD)
    try:
        time.sleep(1)
        assert api_time(s) < 1.0
        closed = sum(closed_by_server(c, 0.2) for c in socks)
        assert closed >= 100, f"only {closed} of 150 closed with a bound of 50"
        assert s.proc.poll() is None
    finally:
        close_all(socks)


def next_serial(s) -> int:
    return int(requests.get(f"{s.url}/+api", timeout=10).headers["X-Devpi-Serial"]) + 1


def test_long_polls_do_not_starve_the_api(sec_servers):
    """Attacker: 40 anonymous long-polls on /+changelog/<next serial>, each held for the full
    wait. Must hold: they do not take the threads that answer everyone else (GET /+api within
    1 s), and a commit still wakes them."""
    s = sec_servers()
    request = f"GET /+changelog/{next_serial(s)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    polls = open_sockets(s, 40, request)
    try:
        time.sleep(0.5)
        assert max(api_time(s) for _ in range(3)) < 1.0
        auth = s.login("root", "root")
        s.create_user("poller", "pw")  # the change they wait for
        assert s.api("GET", "/+api", auth=auth).status_code == 200
        assert all(read_response(c, 10)[0] == 200 for c in polls)
    finally:
        close_all(polls)


def test_long_polls_beyond_the_bound_get_429(sec_servers):
    """Attacker: more long-polls than --max-long-polls. Must hold: the extra ones are refused
    at once with 429, Retry-After and a JSON message, and the API stays responsive."""
    s = sec_servers(args=("--max-long-polls", "10"))
    request = f"GET /+changelog/{next_serial(s)}?timeout=20 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    polls = open_sockets(s, 10, request)
    try:
        time.sleep(0.5)
        extra = open_sockets(s, 30, request)
        try:
            for c in extra:
                status, headers, body = read_response(c, 3)
                assert status == 429 and headers["retry-after"] == "1"
                assert "too many" in json.loads(body)["message"]
        finally:
            close_all(extra)
        assert api_time(s) < 1.0
    finally:
        close_all(polls)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "abc", "1e400", "-inf"])
def test_long_poll_timeout_must_be_a_finite_number(plain, value):
    """Attacker: ?timeout=nan (waited forever), abc (was a 500), inf, negative. Must hold: 400
    with a JSON message, at once."""
    s = plain
    r = requests.get(f"{s.url}/+changelog/{next_serial(s)}?timeout={value}", timeout=5)
    assert r.status_code == 400, r.text
    assert "timeout" in r.json()["message"]


def test_huge_long_poll_timeout_is_clamped():
    """A huge ?timeout= waits no longer than the server's bound (30 s)."""
    from devpi.server.api.meta import MAX_POLL_WAIT, poll_timeout

    assert poll_timeout("1e300") == MAX_POLL_WAIT == 30
    assert poll_timeout("2.5") == 2.5


@pytest.fixture
def hanging_upstream() -> Iterator[int]:
    """A local 'upstream' that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except (TimeoutError, OSError):
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield listener.getsockname()[1]
    stop.set()
    t.join()
    close_all(held)
    listener.close()


def test_hanging_upstream_does_not_starve_the_api(plain, hanging_upstream):
    """Attacker: 40 requests to a mirror whose upstream accepts and never answers. Must hold:
    they wait in their own lane; GET /+api is answered within 1 s meanwhile."""
    s = plain
    root = s.login("root", "root")
    s.create_index(root, "hang", type="mirror", mirror_url=f"http://127.0.0.1:{hanging_upstream}/simple/")
    requests_ = [f"GET /root/hang/+simple/pkg{i}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(40)]
    socks = [open_sockets(s, 1, r)[0] for r in requests_]
    try:
        time.sleep(0.5)
        assert max(api_time(s) for _ in range(3)) < 1.0
    finally:
        close_all(socks)


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def test_refused_upload_body_is_never_stored(sec_servers, tmp_path):
    """Attacker: anonymous 300 MB POST to a user's upload URL. Must hold: the 401 comes from the
    headers, before the body is sent (the client waits for it after 1 MiB), and nothing of the
    body is written: neither the server dir's blobs/tmp nor the server's temp dir grows while
    the rest streams in and is discarded."""
    server_tmp = tmp_path / "servertmp"
    server_tmp.mkdir()
    s = sec_servers(env={"TMPDIR": str(server_tmp)})
    vic = s.create_user("vic", "pw")
    s.create_index(vic, "dev")
    blob_tmp = s.serverdir / "blobs" / "tmp"
    before = tree_size(blob_tmp) + tree_size(server_tmp)
    total = 300 * 1024 * 1024
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        c.sendall(b"POST /vic/dev/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
                  b"Content-Length: %d\r\n\r\n" % total)
        chunk = os.urandom(1024 * 1024)
        c.sendall(chunk)
        t0 = time.monotonic()
        status, headers, body = read_response(c, 3)
        assert status == 401 and time.monotonic() - t0 < 2
        assert "authentication required" in json.loads(body)["message"]
        for _ in range(40):  # more of the body: read and dropped by the server
            c.sendall(chunk)
        assert tree_size(blob_tmp) + tree_size(server_tmp) - before < 64 * 1024
    finally:
        c.close()
    assert api_time(s) < 1.0


def test_stalled_or_trickled_body_frees_its_thread(sec_servers):
    """Attacker: a request body that stops after a few bytes, and one trickled a byte every
    0.2 s (never idle long enough for an idle timeout). Must hold: both end with 408 JSON
    within a few seconds of the 2 s connection timeout, and the server answers meanwhile."""
    s = sec_servers(args=("--connection-timeout", "2"))
    head = b"PUT /trickler HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    stalled = open_sockets(s, 1, head + b'{"password": ')[0]
    trickled = open_sockets(s, 1, head)[0]
    try:
        t0 = time.monotonic()
        answered = None
        trickled.settimeout(0.2)
        while time.monotonic() - t0 < 10:
            try:
                trickled.send(b" ")
                got = trickled.recv(65536)
                answered = got
                break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                answered = b""
                break
        assert answered is not None and time.monotonic() - t0 < 8, "the trickled body was never cut off"
        if answered:
            assert answered.startswith(b"HTTP/1.1 408")
        status, headers, body = read_response(stalled, 6)
        assert status == 408 and "request body" in json.loads(body)["message"]
        assert api_time(s) < 1.0
    finally:
        close_all([stalled, trickled])


@pytest.mark.parametrize("request_bytes, status, text", [
    (b"GARBAGE\r\n\r\n", 400, "malformed HTTP request"),
    (b"GET /+api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "malformed HTTP request"),
    (b"GET /+api HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200_000 + b"\r\n\r\n", 431, "request head"),
    (b"POST /x/y/ HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413, "too large"),
])
def test_transport_errors_are_json(plain, request_bytes, status, text):
    """Attacker: malformed or smuggling-shaped requests, an oversized head, a body declared far
    over the upload limit. Must hold: refused by the server itself with the right 4xx and a
    JSON message (no request reaches the application), and the server goes on."""
    c = open_sockets(plain, 1)[0]
    try:
        try:
            c.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we were still sending: the answer is already waiting
        got, headers, body = read_response(c, 5)
        assert got == status and headers["content-type"].startswith("application/json")
        assert text in json.loads(body)["message"]
    finally:
        c.close()
    assert api_time(plain) < 1.0


# -- chunked bodies: the same limits as bodies with a length ------------------------------

def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def chunked_head(method: str, path: str, ctype: str, extra: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            "Transfer-Encoding: chunked\r\n").encode() + extra + b"\r\n"


UPLOAD_CTYPE = "multipart/form-data; boundary=XyZ"


def test_anonymous_chunked_upload_is_refused_before_its_body(sec_servers):
    """Attacker: anonymous chunked POST to a user's upload URL that sends one chunk and never
    ends (the server used to read up to 1 MiB of it in the event loop before any permission
    check). Must hold: the 401 comes from the headers while the body is unfinished."""
    s = sec_servers()
    vic = s.create_user("chvic", "pw")
    s.create_index(vic, "dev")
    c = open_sockets(s, 1, chunked_head("POST", "/chvic/dev/", UPLOAD_CTYPE) + chunk(b"--XyZ\r\n" * 1000))[0]
    try:
        status, headers, body = read_response(c, 3)
        assert status == 401 and "authentication required" in json.loads(body)["message"]
    finally:
        c.close()


def test_unfinished_chunked_uploads_do_not_lock_out_new_clients(sec_servers):
    """Attacker: more anonymous chunked uploads than --max-connections, each with its head
    complete and a body that never ends. Must hold: each is answered from its headers, so
    it can be closed to make room like any idle connection, and a new client's GET /+api is
    answered within 1 s (not 503)."""
    s = sec_servers(args=("--max-connections", "50", "--connection-timeout", "60"))
    vic = s.create_user("chlock", "pw")
    s.create_index(vic, "dev")
    socks = open_sockets(s, 120, chunked_head("POST", "/chlock/dev/", UPLOAD_CTYPE) + chunk(b"x" * 4096))
    try:
        time.sleep(1)
        assert max(api_time(s) for _ in range(3)) < 1.0
        assert s.proc.poll() is None
    finally:
        close_all(socks)


def test_stalled_or_trickled_chunked_body_is_408(sec_servers):
    """Attacker: a chunked body that stops after its first chunk (was a 500 from the HTTP
    layer), and one trickled a chunk every 0.2 s (was never cut off). Must hold: both end
    with 408 JSON within a few seconds of the 2 s connection timeout."""
    s = sec_servers(args=("--connection-timeout", "2"))
    head = chunked_head("PUT", "/chtrickler", "application/json")
    stalled = open_sockets(s, 1, head + chunk(b'{"password": '))[0]
    trickled = open_sockets(s, 1, head)[0]
    try:
        t0 = time.monotonic()
        answered = None
        trickled.settimeout(0.2)
        while time.monotonic() - t0 < 10:
            try:
                trickled.send(chunk(b" "))
                answered = trickled.recv(65536)
                break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                answered = b""
                break
        assert answered is not None and time.monotonic() - t0 < 8, "the trickled body was never cut off"
        if answered:
            assert answered.startswith(b"HTTP/1.1 408"), answered[:200]
        status, headers, body = read_response(stalled, 6)
        assert status == 408 and headers["content-type"].startswith("application/json")
        assert "request body" in json.loads(body)["message"]
        assert api_time(s) < 1.0
    finally:
        close_all([stalled, trickled])


def test_chunked_body_cut_off_by_disconnect_is_not_a_request(plain):
    """Attacker (or a broken network): a chunked body whose first chunk is a complete JSON
    document, then the connection closes before the last chunk. Must hold: the partial body
    is never taken for the whole one: the user is not created."""
    c = open_sockets(plain, 1, chunked_head("PUT", "/chcut", "application/json") + chunk(b'{"password": "pw"}'))[0]
    time.sleep(0.3)
    c.close()
    time.sleep(1)
    assert requests.get(f"{plain.url}/chcut", timeout=5).status_code == 404
    assert requests.get(f"{plain.url}/+api", timeout=5).status_code == 200


def test_push_from_a_hanging_mirror_does_not_starve_the_api(sec_servers, hanging_upstream):
    """Attacker: a user pushes releases from an index that reads from a mirror whose upstream
    accepts and never answers (the push downloads the files first), more pushes than the
    main lane has threads. Must hold: the pushes wait in the upstream lane; GET /+api and
    logins are answered within 1 s meanwhile."""
    s = sec_servers(args=("--threads", "4"))
    root = s.login("root", "root")
    s.create_index(root, "hangpush", type="mirror", mirror_url=f"http://127.0.0.1:{hanging_upstream}/simple/")
    pusher = s.create_user("pusher", "pw")
    s.create_index(pusher, "dev")
    s.create_index(pusher, "base", bases="root/hangpush")
    import base64
    token = base64.b64encode(f"{pusher[0]}:{pusher[1]}".encode()).decode()
    socks = []
    for i in range(12):
        body = json.dumps({"name": f"pkg{i}", "version": "1.0", "targetindex": "pusher/dev"}).encode()
        method, source = (("PUSH", "root/hangpush"), ("POST", "pusher/base"))[i % 2]
        socks += open_sockets(s, 1, (f"{method} /{source}/ HTTP/1.1\r\nHost: x\r\nX-Devpi-Auth: {token}\r\n"
                                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                                     ).encode() + body)
    try:
        time.sleep(1)
        assert max(api_time(s) for _ in range(3)) < 1.0
        t0 = time.monotonic()
        s.login("pusher", "pw")
        assert time.monotonic() - t0 < 1.0
    finally:
        close_all(socks)


def test_uvicorn_is_pinned_below_its_next_release():
    """server/http/httpserver.py extends uvicorn's internals (STATUS_LINE, RequestResponseCycle,
    more_body, send_400_response), which may change in any release: the distribution must
    cap uvicorn, the installed one must be inside the cap, and the internals must be there."""
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement
    from uvicorn.protocols.http import httptools_impl

    reqs = [Requirement(r) for r in requires("devpi") or []]
    # the server's libraries come with the `server` extra (`pip install .` is the client only)
    uvicorn = [r for r in reqs if r.name == "uvicorn" and r.marker and r.marker.evaluate({"extra": "server"})]
    assert len(uvicorn) == 1, reqs
    assert any(spec.operator == "<" for spec in uvicorn[0].specifier), f"no upper bound: {uvicorn[0]}"
    assert uvicorn[0].specifier.contains(version("uvicorn")), (str(uvicorn[0]), version("uvicorn"))
    assert isinstance(httptools_impl.STATUS_LINE, dict)
    assert hasattr(httptools_impl.HttpToolsProtocol, "send_400_response")
    assert "more_body" in httptools_impl.RequestResponseCycle.__init__.__code__.co_names
