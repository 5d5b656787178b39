"""Writes forwarded by a replica under attack. The replica follows its primary through a
recording proxy (tests/support/recording_proxy.py), so each test sees exactly what the
replica sent: the primary decides who may write (the replica adds no rights, never sends
its secret), an oversized body is refused before it reaches the primary, and path tricks
never become requests to other hosts or to the primary's feed."""
from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests
from support.dists import write_wheel
from support.recording_proxy import Proxy, recording_proxy
from support.replication import SECRET, primary_args, replica_args, serial_of, wait_until, write_secret

SECRET_HEADER = "x-devpi-replica-secret"


@pytest.fixture
def proxied(make_server, tmp_path, request) -> Iterator[tuple]:
    """(primary, proxy, make_replica): replicas made with ``make_replica(*args)`` follow the
    primary through the proxy."""
    secret = write_secret(tmp_path)
    primary = make_server(args=primary_args(secret))
    alice = primary.create_user("alice", "alice-pw")
    primary.create_index(alice, "dev", bases=[])
    primary.create_user("bob", "bob-pw")
    with recording_proxy(primary.url) as proxy:
        def make_replica(*args: str):
            replica = make_server(args=replica_args(proxy.url, secret, *args))
            wait_until(lambda: serial_of(replica) >= serial_of(primary), what="the replica catching up")
            return replica
        yield primary, proxy, make_replica


def _json_error(r: requests.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()["message"]


def _no_secret_in_writes(proxy: Proxy) -> None:
    """Every request of the replica that is not its feed or file fetch carries no secret,
    and the feed was only ever read."""
    for seen in proxy.seen:
        if seen.path.startswith("/+replica/"):
            assert seen.method == "GET", seen
            continue
        assert SECRET_HEADER not in seen.headers, seen
        assert not any(SECRET in v for v in seen.headers.values()), seen


def test_the_primary_decides_who_may_write(proxied, tmp_path):
    primary, proxy, make_replica = proxied
    replica = make_replica()
    wheel = write_wheel(tmp_path, "evil-lib", "1.0")
    # anonymous: the primary's 401 (with its challenge); nothing was made
    r = requests.put(replica.url + "/alice/anon", json={}, timeout=60)
    assert "authentication required" in _json_error(r, 401) and r.headers.get("WWW-Authenticate")
    r = replica.upload("alice/dev", wheel, None)
    _json_error(r, 401)
    # bob in alice's places: the primary's 403
    bob = replica.login("bob", "bob-pw")
    _json_error(replica.upload("alice/dev", wheel, bob), 403)
    _json_error(replica.api("PUT", "/alice/bobs", json={}, auth=bob), 403)
    _json_error(replica.api("DELETE", "/alice/dev", auth=bob), 403)
    _json_error(replica.api("PATCH", "/alice", json={"email": "bob@example.org"}, auth=bob), 403)
    # a wrong password: 401 from the primary, counted by its throttle
    _json_error(replica.api("PUT", "/alice/x", json={}, auth=("alice", "wrong")), 401)
    # a client that sends the replica secret itself gets nothing more: it is not passed on
    r = requests.put(replica.url + "/alice/withsecret", json={}, timeout=60, headers={"X-Devpi-Replica-Secret": SECRET})
    _json_error(r, 401)
    for path in ("/alice/anon", "/alice/bobs", "/alice/x", "/alice/withsecret"):
        assert primary.api("GET", path).status_code == 404
    assert primary.api("GET", "/alice/dev").status_code == 200
    assert primary.api("GET", "/alice/dev/evil-lib").status_code == 404
    assert primary.api("GET", "/alice").json()["result"].get("email") != "bob@example.org"
    writes = proxy.writes()
    assert len(writes) == 8
    assert all("authorization" not in w.headers and "x-devpi-auth" not in w.headers for w in writes[:2])
    assert "x-devpi-replica-secret" not in writes[-1].headers
    _no_secret_in_writes(proxy)


def test_the_client_address_goes_along_but_only_as_this_replica_resolved_it(proxied, make_server, tmp_path):
    primary, proxy, make_replica = proxied
    root = primary.login("root", "root")
    # the test client is on loopback, which a replica believes by default (like nginx in front of it)
    trusting = make_replica()
    r = trusting.api("PUT", "/carol", json={"password": "pw"}, headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 201, r.text
    # a replica that trusts no proxy passes on the peer, not what the client wrote
    strict = make_replica("--trusted-proxy", "none")
    r = strict.api("PUT", "/dave", json={"password": "pw"}, headers={"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 201, r.text
    entries = primary.api("GET", "/+audit?limit=1000", auth=root).json()["result"]["entries"]
    clients = {e["path"]: e["client"] for e in entries if e["method"] == "PUT"}
    assert clients["/carol"] == "203.0.113.9"
    assert clients["/dave"] == "127.0.0.1"
    assert "198.51.100.7" not in {e["client"] for e in entries}
    seen = {w.path: w.headers.get("x-forwarded-for") for w in proxy.writes()}
    assert seen == {"/carol": "203.0.113.9", "/dave": "127.0.0.1"}


def test_an_oversized_body_is_413_and_never_reaches_the_primary(proxied, tmp_path):
    primary, proxy, make_replica = proxied
    replica = make_replica("--max-upload-size", "100K")
    alice = replica.login("alice", "alice-pw")
    big = b"x" * (3 << 20)
    r = requests.post(replica.url + "/alice/dev/", data=big, auth=alice, timeout=60,
                      headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert "too large" in _json_error(r, 413)
    assert proxy.writes() == []

    def chunks():
        for _ in range(48):
            yield b"y" * (64 << 10)
    r = requests.post(replica.url + "/alice/dev/", data=chunks(), auth=alice, timeout=60,
                      headers={"Content-Type": "application/json"})
    assert "too large" in _json_error(r, 413)
    # the chunked body went out as it came, and broke off at the limit: the primary never had it whole
    assert [w.complete for w in proxy.writes()] == [False]
    assert primary.api("GET", "/alice/dev").status_code == 200
    # a body within the limit still goes through
    r = replica.upload("alice/dev", write_wheel(tmp_path, "small-lib", "1.0"), alice)
    assert r.status_code == 200, r.text
    assert [w.complete for w in proxy.writes()][-1]


def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    host, port = url.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("target, status", [
    (b"/../+replica/changes", 400),
    (b"/%2e%2e/+replica/changes", 400),
    (b"/alice/./dev", 400),
    (b"/+replica/changes?since=0", 404),
    (b"/+replica/blob/" + b"0" * 64, 404),
])
def test_path_tricks_are_not_forwarded(proxied, target, status):
    primary, proxy, make_replica = proxied
    replica = make_replica()
    before = len(proxy.writes())
    for method in (b"POST", b"DELETE"):
        got, body = _raw(replica.url, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                         b"Content-Type: application/json\r\nConnection: close\r\n\r\n{}")
        assert got == status, body
        assert b'"message"' in body
    assert len(proxy.writes()) == before
    _no_secret_in_writes(proxy)


def test_an_absolute_uri_request_line_goes_to_the_primary_only(proxied):
    primary, proxy, make_replica = proxied
    replica = make_replica()
    body = b'{"password": "erin-pw"}'
    got, answer = _raw(replica.url, b"PUT http://example.org/erin HTTP/1.1\r\nHost: example.org\r\n"
                       b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                       + b"\r\nConnection: close\r\n\r\n" + body)
    assert got == 201, answer
    assert primary.api("GET", "/erin").status_code == 200
    assert [(w.method, w.path) for w in proxy.writes()] == [("PUT", "/erin")]
    assert proxy.writes()[0].headers["host"] == proxy.url.split("//", 1)[1]
    _no_secret_in_writes(proxy)


def test_a_primary_failing_or_refusing_is_a_json_error_naming_it(proxied):
    primary, proxy, make_replica = proxied
    replica = make_replica()
    alice = replica.login("alice", "alice-pw")
    for status, expect in ((500, 502), (507, 502), (503, 503)):
        proxy.refuse = lambda method, path, status=status: status if method == "PUT" else None
        r = replica.api("PUT", "/alice/failing", json={}, auth=alice)
        message = _json_error(r, expect)
        assert proxy.url in message and r.headers["X-Devpi-Primary-Url"] == proxy.url
    proxy.refuse = lambda method, path: None
    assert replica.api("PUT", "/alice/failing", json={}, auth=alice).status_code == 200
