"""The mirror client's destination guard, where connections are made (doc/mirror.md,
"Security policy"): the address checked is the address connected to.

These drive the client in-process against real local HTTP servers, with the name
lookup replaced so a name can answer differently from one lookup to the next (DNS
rebinding); the server-level tests are in tests/security/test_sec_ssrf.py.
"""
from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from ipaddress import ip_address

import pytest
from devpi.server.mirror.policy import (
    DestinationRefused,
    MirrorPolicy,
    address_kind,
    names_this_server,
)
from devpi.server.mirror.upstream_client import UpstreamClient

REAL_GETADDRINFO = socket.getaddrinfo


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def sites() -> Iterator[dict[str, http.server.ThreadingHTTPServer]]:
    """"allowed" on 127.0.0.2 and "internal" on 127.0.0.1."""
    made = {}
    for name, host in (("allowed", "127.0.0.2"), ("internal", "127.0.0.1")):
        s = http.server.ThreadingHTTPServer((host, 0), _Handler)
        s.asked, s.name = [], name
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        made[name] = s
    yield made
    for s in made.values():
        s.shutdown()
        s.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")


def _answers(monkeypatch, name: str, answers: list[list[tuple[str, int]]]) -> list[int]:
    """Make ``name`` resolve to the next list of (address, port) on every lookup."""
    calls = []

    def getaddrinfo(host, port, *args, **kw):
        if host != name:
            return REAL_GETADDRINFO(host, port, *args, **kw)
        calls.append(1)
        got = answers[min(len(calls), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", addr) for addr in got]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def _guard() -> MirrorPolicy:
    return MirrorPolicy.from_options(allow_hosts="127.0.0.2")  # 127.0.0.1 stays refused


def test_a_name_that_rebinds_between_lookups_reaches_only_the_checked_address(sites, monkeypatch):
    """The attacker's name answers an allowed address to the first lookup and the internal
    one to every later lookup: a check that resolved apart from the connection would pass
    and then connect inside. Here the one lookup made is the one connected to."""
    allowed, internal = sites["allowed"], sites["internal"]
    _answers(monkeypatch, "rebind.test", [[("127.0.0.2", allowed.server_address[1])],
                                          [("127.0.0.1", internal.server_address[1])]])
    client = UpstreamClient("test", guard=_guard().check)
    r = client.get(f"http://rebind.test:{allowed.server_address[1]}/x")
    assert r.content == b"allowed" and internal.asked == []
    # a new connection resolves again, now to the internal address: refused, not connected
    with pytest.raises(DestinationRefused, match="loopback"):
        UpstreamClient("test", guard=_guard().check).get(f"http://rebind.test:{allowed.server_address[1]}/y")
    assert internal.asked == []


def test_of_several_addresses_only_allowed_ones_are_tried(sites, monkeypatch):
    """A name answering an internal address first and an allowed one second connects to
    the allowed one; a redirect to the internal address is refused, not followed."""
    allowed, internal = sites["allowed"], sites["internal"]
    port = allowed.server_address[1]
    _answers(monkeypatch, "two.test", [[("127.0.0.1", internal.server_address[1]), ("127.0.0.2", port)]])
    assert UpstreamClient("test", guard=_guard().check).get(f"http://two.test:{port}/z").content == b"allowed"
    assert internal.asked == []
    with pytest.raises(DestinationRefused):
        UpstreamClient("test", guard=_guard().check).get(f"http://127.0.0.1:{internal.server_address[1]}/")
    assert internal.asked == []


def test_through_a_proxy_the_name_is_checked_before_asking_the_proxy(sites, monkeypatch):
    """The proxy would connect for us: a name resolving to a refused address here is
    refused before the proxy is asked."""
    proxy = sites["allowed"]  # plays the proxy
    monkeypatch.setenv("http_proxy", f"http://127.0.0.2:{proxy.server_address[1]}")
    _answers(monkeypatch, "inside.test", [[("10.1.2.3", 80)]])
    with pytest.raises(DestinationRefused, match="private"):
        UpstreamClient("test", guard=_guard().check).get("http://inside.test/secret")
    assert proxy.asked == []


def test_address_kinds_and_option_entries():
    assert address_kind(ip_address("169.254.169.254")) == "link-local"
    assert address_kind(ip_address("::ffff:10.0.0.1")) == "private"
    assert address_kind(ip_address("fd00::1")) == "private"
    assert address_kind(ip_address("100.64.0.1")) == "non-public"
    assert address_kind(ip_address("93.184.215.14")) is None
    policy = MirrorPolicy.from_options(allow_hosts="10.0.0.0/8,pkgs.corp.example,[fd00::5]:8080",
                                       mirror_url="http://127.0.0.1:4040/simple/")
    assert policy.refusal("x", 80, "10.9.9.9") is None
    assert policy.refusal("pkgs.corp.example", 443, "192.168.1.1") is None
    assert policy.refusal("fd00::5", 8080, "fd00::5") is None
    assert policy.refusal("fd00::5", 8081, "fd00::5") is not None
    assert policy.refusal("127.0.0.1", 4040, "127.0.0.1") is None  # --mirror-url's host:port
    assert policy.refusal("127.0.0.1", 4041, "127.0.0.1") is not None
    assert not policy.file_link_allowed("alice", "http://127.0.0.1/simple/", "http://127.0.0.2/a.whl")
    assert policy.file_link_allowed("alice", "http://127.0.0.1/simple/", "http://127.0.0.1:80/f/a.whl")
    assert policy.file_link_allowed("root", "http://127.0.0.1/simple/", "http://127.0.0.2/a.whl")
    assert names_this_server("http://127.0.0.1:3141/x/", "127.0.0.1", 3141, [])
    assert not names_this_server("http://127.0.0.1:3142/x/", "127.0.0.1", 3141, [])
    assert names_this_server("https://127.0.0.9/root/pypi/", "127.0.0.1", 3141, ["https://127.0.0.9"])
