"""Finding 20 (d): proxy headers are believed only from trusted proxies.

``X-Outside-Url`` and ``X-Forwarded-Proto`` decide the absolute URLs the
server hands out (the login URL devpi-client posts passwords to, upload and
test-run links). A client that is not the admin's proxy must not choose them,
nor smuggle a path or credentials through the ``Host`` header.
"""
from __future__ import annotations

import http.client
import json

import requests


def api_login_url(server, headers):
    r = requests.get(f"{server.url}/+api", headers={"Accept": "application/json", **headers}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["result"]["login"]


def test_outside_url_from_an_untrusted_peer_is_ignored(sec_servers):
    """With the proxy elsewhere (--trusted-proxy 127.0.0.2), our loopback client's
    X-Outside-Url and X-Forwarded-Proto change nothing: the login URL stays on this server."""
    server = sec_servers(args=("--trusted-proxy", "127.0.0.2"))
    login = api_login_url(server, {"X-Outside-Url": "http://127.0.0.66/steal",
                                   "X-Forwarded-Proto": "https"})
    assert login == f"{server.url}/+login"


def test_outside_url_from_a_trusted_proxy_is_used(sec_servers):
    """The default trusts loopback (a proxy on the same host): its X-Outside-Url is used, and
    --outside-url is used when no proxy header is sent."""
    server = sec_servers()
    assert api_login_url(server, {"X-Outside-Url": "https://127.0.0.77/devpi/"}) == \
        "https://127.0.0.77/devpi/+login"
    assert api_login_url(server, {"X-Forwarded-Proto": "https"}) == f"https://{server.url[7:]}/+login"
    assert api_login_url(server, {"X-Forwarded-Proto": "javascript"}) == f"{server.url}/+login"
    pinned = sec_servers(args=("--trusted-proxy", "none", "--outside-url", "https://127.0.0.77"))
    assert api_login_url(pinned, {"X-Outside-Url": "http://127.0.0.66"}) == \
        "https://127.0.0.77/+login"
    assert api_login_url(pinned, {"Host": "127.0.0.66"}) == "https://127.0.0.77/+login"


def test_a_host_header_that_is_not_a_host_is_not_echoed(sec_servers):
    """A Host with a path, user info or spaces would turn the login URL into one on another
    server (``127.0.0.66/x?`` or ``a@127.0.0.66``): the listening address is used."""
    server = sec_servers()
    for host in ("127.0.0.66/x?", "user@127.0.0.66", "127.0.0.66#", "a b"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.putrequest("GET", "/+api", skip_host=True)
        conn.putheader("Host", host)
        conn.putheader("Accept", "application/json")
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        if resp.status == 400:  # refused by the HTTP layer: also fine
            continue
        assert resp.status == 200, body
        assert json.loads(body)["result"]["login"] == f"http://127.0.0.1:{server.port}/+login", host
    # an ordinary host is kept (clients reach the server under names we cannot know)
    assert api_login_url(server, {"Host": "127.0.0.5:8080"}) == "http://127.0.0.5:8080/+login"
