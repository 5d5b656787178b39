"""Who gets a page: the Accept/User-Agent rules of the middleware, as plain functions."""
from __future__ import annotations

import pytest
from devpi.web.middleware import is_browser

FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@pytest.mark.parametrize(("accept", "agent", "html"), [
    (FIREFOX, "Mozilla/5.0", True),
    ("text/html", "curl/8.0", True),                       # asked for HTML explicitly
    ("*/*", "curl/8.0", False),                             # curl's default: the API
    ("", "python-requests/2.31", False),
    ("application/json", "devpi-client/7", False),
    ("application/json, text/html;q=0.9", "Mozilla/5.0", False),
    ("text/html;q=0.5, application/json;q=0.9", "x", False),
    ("text/html, application/json;q=0.9", "x", True),
    (PIP, "pip/24.0 {}", False),                            # installers never
    (FIREFOX, "pip/24.0 CPython", False),
    (FIREFOX, "uv/0.4.0", False),
    ("text/html;q=0", "Mozilla/5.0", False),
    ("text/html;q=bogus", "Mozilla/5.0", False),
])
def test_is_browser(accept, agent, html):
    assert is_browser({"HTTP_ACCEPT": accept, "HTTP_USER_AGENT": agent}) is html
