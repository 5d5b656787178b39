"""Replication under attack: the feed without or with a wrong secret, bad parameters, blob
path tricks, wrong options; and a hostile primary (a tiny local HTTP server) sending
oversize lines, unknown tables and columns, a wrong serial sequence, a server-local kv row,
and a file whose bytes do not match their hash. Each is refused with nothing wrong
stored; the replica stays up and /+status names the problem."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.parse

import pytest
import requests
from support.local_http import QuietHandler, serve
from support.populate import SIMPLE_JSON, upload_wheel
from support.replication import (
    REPLICA_HEADER,
    SECRET,
    primary_args,
    replica_args,
    serial_of,
    status,
    wait_until,
    write_secret,
)

OK = {REPLICA_HEADER: SECRET}


@pytest.fixture
def primary(make_server, tmp_path):
    s = make_server(args=primary_args(write_secret(tmp_path)))
    alice = s.create_user("alice", "alice-pw")
    s.create_index(alice, "dev", bases=[])
    upload_wheel(s, "alice/dev", "hello-lib", "1.0", alice)
    return s


def _feed(s, headers=None, **params):
    return requests.get(s.url + "/+replica/changes", params=params, headers=headers or {}, timeout=60)


def _json_error(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()["message"]


def test_feed_and_blobs_need_the_secret(primary, make_server):
    assert "secret" in _json_error(_feed(primary, since=-1, wait=0), 401)
    assert "wrong" in _json_error(_feed(primary, {REPLICA_HEADER: "x" * 40}, since=-1, wait=0), 403)
    assert _json_error(_feed(primary, {REPLICA_HEADER: SECRET + "x"}, since=-1, wait=0), 403)
    sha = "0" * 64
    assert _json_error(requests.get(primary.url + f"/+replica/blob/{sha}", timeout=30), 401)
    assert _json_error(requests.get(primary.url + f"/+replica/blob/{sha}", headers={REPLICA_HEADER: "no"},
                                    timeout=30), 403)
    # a server without --replica-secret-file has no feed at all
    plain = make_server()
    assert "not enabled" in _json_error(_feed(plain, OK, since=-1, wait=0), 404)
    assert _json_error(requests.get(plain.url + f"/+replica/blob/{sha}", headers=OK, timeout=30), 404)


def test_feed_lines_are_the_serials_in_order(primary):
    r = _feed(primary, OK, since=-1, wait=0)
    assert r.status_code == 200
    serials = [json.loads(line)["serial"] for line in r.content.splitlines()]
    assert serials == list(range(serial_of(primary) + 1))
    r = _feed(primary, OK, since=2, wait=0)
    assert [json.loads(line)["serial"] for line in r.content.splitlines()][0] == 3


@pytest.mark.parametrize("since", ["abc", "-2", "1e3", "9" * 30, "1.5", "0x10", " 1"])
def test_bad_since_is_400(primary, since):
    _json_error(_feed(primary, OK, since=since, wait=0), 400)


@pytest.mark.parametrize("wait", ["-1", "nan", "inf", "abc", "1" * 400])
def test_bad_wait_is_400(primary, wait):
    _json_error(_feed(primary, OK, since=-1, wait=wait), 400)


def test_huge_wait_is_clamped_and_since_beyond_the_primary_is_409(primary):
    r = _feed(primary, OK, since=-1, wait="1e12")  # serials to send: answered at once
    assert r.status_code == 200 and r.content
    assert "beyond" in _json_error(_feed(primary, OK, since=10_000, wait=0), 409)


@pytest.mark.parametrize("path", ["..%2f..%2fdevpi.sqlite", "%2e%2e%2fdevpi.sqlite", "A" * 64, "0" * 63,
                                  "0" * 65, "g" * 64, "0" * 64 + "%00"])
def test_blob_path_tricks(primary, path):
    r = requests.get(primary.url + "/+replica/blob/" + path, headers=OK, timeout=30)
    assert r.status_code in (400, 404), r.status_code
    assert r.headers["Content-Type"].startswith("application/json")
    assert b"SQLite" not in r.content


def test_blob_of_the_primary_is_served_whole_and_unknown_is_404(primary):
    line = json.loads(_feed(primary, OK, since=-1, wait=0).content.splitlines()[-1])
    sha = next(i["row"]["sha256"] for i in line["rows"] if i["t"] == "files" and "row" in i)
    r = requests.get(primary.url + f"/+replica/blob/{sha}", headers=OK, timeout=30)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha
    _json_error(requests.get(primary.url + "/+replica/blob/" + "ab" * 32, headers=OK, timeout=30), 404)


# -- options ---------------------------------------------------------------------------------------
def _start_fails(tmp_path, *args: str, timeout: float = 60) -> str:
    done = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "srv"),
                           "--port", "0", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_option_errors_are_one_line(tmp_path):
    good = write_secret(tmp_path)
    assert "No such file" in _start_fails(tmp_path, "--replica-secret-file", str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    assert "empty" in _start_fails(tmp_path, "--replica-secret-file", str(empty))
    big = tmp_path / "big"
    big.write_bytes(b"x" * 10_000)
    assert "larger than" in _start_fails(tmp_path, "--replica-secret-file", str(big))
    short = tmp_path / "short"
    short.write_text("abc")
    assert "at least" in _start_fails(tmp_path, "--replica-secret-file", str(short))
    assert "needs --replica-secret-file" in _start_fails(tmp_path, "--primary-url", "http://127.0.0.1:9")
    for url in ("ftp://127.0.0.1/", "http://u:p@127.0.0.1/", "127.0.0.1:3141", "http://127.0.0.1/?x=1"):
        assert "--primary-url must be" in _start_fails(tmp_path, *replica_args(url, good))
    assert "--workers" in _start_fails(tmp_path, "--workers", "2", *replica_args("http://127.0.0.1:9", good))
    line = _start_fails(tmp_path, *replica_args("http://127.0.0.1:9", good, "--replica-start-wait", "2"))
    assert line.startswith("devpi server: replica start: cannot reach the primary")


# -- a hostile primary ---------------------------------------------------------------------------
class FakePrimary:
    """Answers the feed from ``lines`` (serial -> bytes) for since=-1, and ``after`` (bytes or
    an iterable of bytes) for any later since; blobs from ``blobs``."""

    def __init__(self, lines: dict[int, bytes], uuid: str):
        self.lines = lines
        self.after: object = b""
        self.blobs: dict[str, bytes] = {}
        self.uuid = uuid
        self.asked: list[str] = []

    def __enter__(self) -> FakePrimary:
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                fake.asked.append(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/+replica/changes":
                    since = int(query.get("since", "-1"))
                    body = (b"".join(v for k, v in sorted(fake.lines.items()) if k > since)
                            if since < 0 else fake.after)
                    serial = max(fake.lines)
                elif url.path.startswith("/+replica/blob/"):
                    body = fake.blobs.get(url.path.rsplit("/", 1)[1], b"")
                    serial = max(fake.lines)
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Devpi-Serial", str(serial))
                self.send_header("X-Devpi-Uuid", fake.uuid)
                self.end_headers()
                try:
                    for piece in ([body] if isinstance(body, bytes) else body):
                        self.wfile.write(piece)
                except OSError:
                    pass  # the replica gave up reading: as it should

        self.server = serve(Handler)
        self.url = self.server.url
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()


def _real_lines(primary) -> tuple[dict[int, bytes], str]:
    r = _feed(primary, OK, since=-1, wait=0)
    lines = {json.loads(line)["serial"]: line + b"\n" for line in r.content.splitlines()}
    return lines, r.headers["X-Devpi-Uuid"]


def _line(serial: int, rows: list) -> bytes:
    return json.dumps({"serial": serial, "created": 1.0, "who": "mallory",
                       "changes": [{"kind": "user", "user": "mallory", "op": "create"}],
                       "rows": rows}).encode() + b"\n"


MALLORY = {"name": "mallory", "pwhash": "", "config": "{}", "created": "", "modified": ""}
EIGHT_MIB = b"x" * (8 << 20)

HOSTILE = {
    "oversize line": (lambda: iter([EIGHT_MIB] * 9), "longer than"),
    "not json": (b"{nope\n", "not JSON"),
    "unknown table": (_line(1, [{"t": "evil", "k": [1], "row": {"id": 1}}]), "not a replicated table"),
    "unknown column": (_line(1, [{"t": "users", "k": ["mallory"], "row": {**MALLORY, "is_admin": 1}}]),
                       "unknown columns"),
    "wrong serial": (_line(7, [{"t": "users", "k": ["mallory"], "row": MALLORY}]), "not the next one"),
    "own serial row": (_line(1, [{"t": "users", "k": ["mallory"], "row": MALLORY},
                                 {"t": "kv", "k": ["serial"], "row": {"key": "serial", "value": "99"}}]),
                       "own kv rows"),
    "nested value": (_line(1, [{"t": "users", "k": ["mallory"], "row": {**MALLORY, "config": {"a": 1}}}]),
                     "not a scalar"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_primary_is_refused_and_the_replica_stays_up(primary, make_server, tmp_path, case):
    lines, uuid = _real_lines(primary)
    body, reason = HOSTILE[case]
    with FakePrimary({0: lines[0]}, uuid) as fake:
        fake.after = body() if callable(body) else body
        replica = make_server(args=replica_args(fake.url, write_secret(tmp_path)))
        error = wait_until(lambda: status(replica)["replication"]["last_error"], what="the replica reporting")
        assert reason in error and "refused from the primary" in error
        assert replica.proc.poll() is None
        assert serial_of(replica) == 0
        assert replica.api("GET", "/mallory").status_code == 404
        r = requests.get(replica.url + "/+health", timeout=30)
        assert r.status_code in (200, 503) and r.json()["status"] in ("ready", "unready")


def test_a_file_whose_bytes_do_not_match_is_not_stored(primary, make_server, tmp_path):
    lines, uuid = _real_lines(primary)
    with FakePrimary(lines, uuid) as fake:
        last = json.loads(lines[max(lines)])
        sha = next(i["row"]["sha256"] for i in last["rows"] if i["t"] == "files" and "row" in i)
        fake.blobs[sha] = b"not the wheel"
        replica = make_server(args=replica_args(fake.url, write_secret(tmp_path)))
        wait_until(lambda: serial_of(replica) == max(lines), what="the replica taking the serials")

        def failing():  # the wheel's core metadata blob (this fake primary lacks it) fails too
            files = status(replica)["replication"]["files"]
            return next((f for f in files["failing"] if f["sha256"] == sha), None)
        got = wait_until(failing, what="the file reported failing")
        assert "hash mismatch" in got["reason"]
        assert not list(replica.serverdir.glob(f"blobs/**/{sha}"))
        href = requests.get(replica.url + "/alice/dev/+simple/hello-lib/", headers={"Accept": SIMPLE_JSON},
                            timeout=30).json()["files"][0]["url"]
        r = requests.get(urllib.parse.urljoin(replica.url + "/alice/dev/+simple/hello-lib/", href), timeout=60)
        assert "hash mismatch" in _json_error(r, 503)
        assert not list(replica.serverdir.glob(f"blobs/**/{sha}"))
        assert replica.proc.poll() is None


def test_serials_without_row_images_are_409_and_the_stream_stops_before_them(primary, make_server, tmp_path):
    """A serial whose row images are missing (a server upgraded from before migration 0009, or
    imported) cannot be replicated: the stream ends before it, and asking for it is 409."""
    import sqlite3

    last = serial_of(primary)
    primary.stop()
    with sqlite3.connect(primary.serverdir / "devpi.sqlite") as db:
        db.execute("DELETE FROM replication_rows WHERE serial = ?", (last - 1,))
    primary.start()
    r = _feed(primary, OK, since=-1, wait=0)
    assert [json.loads(line)["serial"] for line in r.content.splitlines()] == list(range(last - 1))
    message = _json_error(_feed(primary, OK, since=last - 2, wait=0), 409)
    assert f"serial {last - 1}" in message and "snapshot" in message
    assert [json.loads(line)["serial"] for line in _feed(primary, OK, since=last - 1, wait=0).content.splitlines()] \
        == [last]
    # a replica takes what it can, then names the problem and keeps serving
    replica = make_server(args=replica_args(primary.url, write_secret(tmp_path)))
    error = wait_until(lambda: status(replica)["replication"]["last_error"], what="the replica reporting")
    assert "409" in error and f"serial {last - 1}" in error
    assert serial_of(replica) == last - 2
    assert replica.api("GET", "/alice").status_code == 200


def _token(s, auth, **body) -> requests.Response:
    return s.api("POST", f"/{auth[0]}/+token-create", json=body, auth=auth)


def test_only_an_admin_token_for_the_whole_server_may_replicate(make_server):
    s = make_server()  # no shared secret: only a replicate token opens the feed
    alice = s.create_user("alice", "alice-pw")
    s.create_index(alice, "dev", bases=[], acl_read=["alice"])
    upload_wheel(s, "alice/dev", "private-lib", "1.0", alice)
    root = s.login("root", "root")
    # alice cannot mint one (the feed would give her every index), nor can root for a few indexes
    assert "admin" in _json_error(_token(s, alice, allowed=["replicate"]), 403)
    assert "indexes" in _json_error(_token(s, root, allowed=["replicate"], indexes=["alice/dev"]), 400)
    # root, for alice: still not an admin's token
    r = s.api("POST", "/alice/+token-create", json={"allowed": ["replicate"]}, auth=root)
    assert "admin" in _json_error(r, 403)
    # tokens without the scope, alice's tokens, and no header at all do not open the feed
    upload_only = _token(s, root, allowed=["upload", "read", "index-admin"]).json()["result"]["token"]
    alices = _token(s, alice, allowed=["read", "upload"]).json()["result"]["token"]
    assert "replicate scope" in _json_error(_feed(s, {REPLICA_HEADER: upload_only}, since=-1, wait=0), 403)
    assert "replicate scope" in _json_error(_feed(s, {REPLICA_HEADER: alices}, since=-1, wait=0), 403)
    assert _json_error(_feed(s, {REPLICA_HEADER: alices[:-3] + "AAA"}, since=-1, wait=0), 403)
    assert "not enabled" in _json_error(_feed(s, since=-1, wait=0), 404)
    assert "not enabled" in _json_error(_feed(s, {REPLICA_HEADER: SECRET}, since=-1, wait=0), 404)
    sha = "0" * 64
    assert _json_error(requests.get(s.url + f"/+replica/blob/{sha}", headers={REPLICA_HEADER: alices},
                                    timeout=30), 403)
    # root's replicate token opens it; revoked, it does not
    made = _token(s, root, allowed=["replicate"]).json()["result"]
    ok = {REPLICA_HEADER: made["token"]}
    r = _feed(s, ok, since=-1, wait=0)
    assert r.status_code == 200 and b"private-lib" in r.content
    assert s.api("DELETE", f"/root/+tokens/{made['id']}", auth=root).status_code == 200
    assert "not valid" in _json_error(_feed(s, ok, since=-1, wait=0), 403)
