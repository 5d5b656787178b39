"""Bad input and foreign servers: each must end in one readable error line, before harm is done.

Every test runs the real ``devpi`` command against the real server (and, where
a non-devpi web server is the point, against a tiny HTTP server in this
process). ``DevpiCLI.fail`` asserts the one-line, no-traceback convention.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from clienthelpers import make_sdist, write_pypirc

HTML_ERROR_PAGE = """<!DOCTYPE html>
<html>
<head>
  <title>502 Bad Gateway</title>
  <style>
    body { font-family: sans-serif; }
  </style>
</head>
<body>
  <h1>Bad Gateway</h1>
  <p>The upstream repository exploded &amp; burned.</p>
  <hr>
  <address>some proxy</address>
</body>
</html>
"""


class PlainHandler(BaseHTTPRequestHandler):
    """A web server that is not devpi: HTML listing at /, HTML 404 elsewhere, HTML 502 on POST."""

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, "<html><body><h1>Directory listing for /</h1></body></html>\n")
        else:
            self._send(404, "<html><body><h1>Error response</h1><p>404 File not found</p></body></html>\n")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._send(502, HTML_ERROR_PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def plain_http() -> Iterator[str]:
    """URL of a running non-devpi HTTP server on 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), PlainHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def no_internal_error(line: str) -> str:
    assert "internal error" not in line, line
    return line


# -- 1: user and index names ----------------------------------------------------------------------

def test_user_names_are_checked_before_any_request(alice, devpi_server):
    alice.ok("index", "-c", "scratch")
    line = alice.fail("user", "--delete", "alice/scratch", "-y")
    assert line == "devpi: error: invalid user name 'alice/scratch': use letters, digits and -._@ only"
    assert "alice/scratch" in alice.ok("index", "-l").split()  # the index was not deleted
    for args in (("user", "alice/dev"), ("user", "-m", "alice/dev", "title=x"),
                 ("user", "-c", "alice/x", "password=x"), ("user", "a?b"), ("user", "a#b"),
                 ("passwd", "a?b", "--password", "x"), ("index", "-l", "a?b")):
        line = alice.fail(*args)
        assert "invalid user name" in line, (args, line)
    assert "alice" in alice.ok("user", "-l").split()
    assert "x" not in alice.ok("user", "-l").split()


def test_index_names_with_query_or_fragment_characters(alice):
    for args in (("index", "-c", "q?x"), ("index", "-c", "alice/q#x"), ("index", "alice/dev?x"),
                 ("index", "-c", "+x"), ("use", "alice/d#v"), ("list", "--index", "dev?x")):
        line = alice.fail(*args)
        assert "invalid index name" in line, (args, line)
    assert "invalid user name" in alice.fail("index", "-c", "a?b/q")
    assert alice.ok("index", "-l").split() == ["alice/dev"]


# -- 2: usage errors name the command ---------------------------------------------------------------

def test_unrecognized_option_is_reported_by_the_command(devpi):
    line = devpi.fail("index", "--bogus", rc=2)
    assert line == "devpi index: error: unrecognized arguments: --bogus (see 'devpi index --help')"
    line = devpi.fail("user", "-l", "--bogus", "--other", rc=2)
    assert line == "devpi user: error: unrecognized arguments: --bogus --other (see 'devpi user --help')"
    # before the command name it is still the top-level parser's
    line = devpi.fail("--bogus", "index", rc=2)
    assert line == "devpi: error: unrecognized arguments: --bogus (see 'devpi --help')"


# -- 3: changing your own password with user -m -------------------------------------------------------

def test_user_modify_own_password_keeps_login(alice, devpi_server):
    old = json.loads((alice.clientdir / "auth.json").read_text())["auth"][devpi_server.url]
    out = alice.ok("user", "-m", "alice", "password=newpw")
    assert "user modified: alice" in out
    new = json.loads((alice.clientdir / "auth.json").read_text())["auth"][devpi_server.url]
    assert new[0] == "alice" and new[1] != old[1]
    # the stored login still works: creating an index needs it
    assert "index created: alice/afterpw" in alice.ok("index", "-c", "afterpw")
    assert "logged in as alice" in alice.ok("use")
    assert "logged in 'alice'" in alice.ok("login", "alice", "--password", "newpw")


# -- 4: internal errors ---------------------------------------------------------------------------------

def test_invalid_ipv6_url_is_one_line(devpi):
    line = no_internal_error(devpi.fail("use", "http://[::1"))
    assert line == "devpi: error: invalid URL 'http://[::1': Invalid IPv6 URL"


def test_unparsable_tox_args_fail_before_any_download(alice):
    r = alice.run("test", "nothere", "--tox-args", '"x')
    assert r.rc == 1 and r.err_lines == ["devpi: error: cannot parse --tox-args '\"x': no closing quotation"]
    assert "received" not in r.out


def test_unusable_pip_config_is_one_line(alice, tmp_path):
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    bad = tmp_path / "pip.conf"
    bad.write_bytes(b"[global]\ntimeout = \xff\xfe\n")
    line = no_internal_error(alice.fail("use", "--set-cfg", env={**env, "PIP_CONFIG_FILE": str(bad)}))
    assert line == f"devpi: error: cannot update {bad}: not UTF-8 text (fix or remove it and retry)"
    assert bad.read_bytes() == b"[global]\ntimeout = \xff\xfe\n"  # left alone
    # showing the settings copes with it too
    assert f"pip config {bad}: index-url not set" in alice.ok("use", env={**env, "PIP_CONFIG_FILE": str(bad)})
    line = no_internal_error(alice.fail("use", "--set-cfg", env={**env, "PIP_CONFIG_FILE": str(tmp_path)}))
    assert line == f"devpi: error: cannot read {tmp_path}: Is a directory"


def test_clientdir_that_is_a_file(devpi, devpi_server, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    for clientdir in (afile, afile / "sub"):
        line = no_internal_error(devpi.fail("--clientdir", str(clientdir), "use", devpi_server.url))
        assert line.startswith(f"devpi: error: client dir {clientdir} is not usable:"), line
    assert afile.read_text() == "not a directory\n"


# -- 5/6: servers that are not devpi, indexes that do not exist -------------------------------------------

def test_non_devpi_server_is_reported(devpi, plain_http):
    devpi.clientdir.mkdir()
    (devpi.clientdir / "current.json").write_text(json.dumps({"login": f"{plain_http}/+login"}))
    for args in (("use", "-l"), ("user", "-l"), ("index", "-l"), ("user", "bob")):
        line = devpi.fail(*args)
        assert line.startswith(f"devpi: error: {plain_http} does not look like a devpi server"), (args, line)


def test_use_index_url_of_non_devpi_server(devpi, plain_http):
    line = devpi.fail("use", f"{plain_http}/foo/bar")
    assert line.startswith(f"devpi: error: {plain_http} does not look like a devpi server"), line
    assert not (devpi.clientdir / "current.json").exists()


def test_unknown_index_is_not_a_missing_project(alice, tmp_path):
    expected = "devpi: error: index nosuch/x not found (404 Not Found: The stage nosuch/x could not be found.)"
    assert alice.fail("list", "tinypkg", "--index", "nosuch/x") == expected
    assert alice.fail("remove", "tinypkg==1.0", "--index", "nosuch/x", "-y") == expected
    line = alice.fail("test", "tinypkg", "--index", "nosuch/x")
    assert "nosuch/x" in line and "not found" in line and "project" not in line
    # an existing index without the project still says so
    assert alice.fail("list", "tinypkg", "--ignore-bases") == (
        "devpi: error: project tinypkg not found on index alice/dev")
    assert alice.fail("remove", "tinypkg", "-y") == "devpi: error: project tinypkg not found on index alice/dev"


# -- 7: URL schemes -----------------------------------------------------------------------------------

def test_url_scheme_checks(devpi, devpi_server):
    hostport = devpi_server.url.split("://", 1)[1]
    line = devpi.fail("use", "ftp://x")
    assert line == "devpi: error: unsupported URL scheme 'ftp' in 'ftp://x': use http:// or https://"
    line = devpi.fail("use", hostport)
    assert line == f"devpi: error: '{hostport}' has no URL scheme: did you mean 'http://{hostport}'?"
    devpi.ok("use", f"HTTP://{hostport}")
    assert json.loads((devpi.clientdir / "current.json").read_text())["login"] == f"{devpi_server.url}/+login"
    # with a server configured the same inputs are URLs, not index names
    out = devpi.ok("use", f"HTTP://{hostport}/root/pypi")
    assert f"current devpi index: {devpi_server.url}/root/pypi" in out
    assert "did you mean" in devpi.fail("use", hostport)
    assert "unsupported URL scheme 'ftp'" in devpi.fail("list", "--index", "ftp://x/a/b")


# -- 8: push to a repository answering HTML -----------------------------------------------------------

def test_push_external_html_error_is_one_line_per_entry(alice, plain_http, tmp_path):
    dist = tmp_path / "htmlpush-1.0.tar.gz"
    make_sdist(dist, "htmlpush", "1.0")
    alice.ok("upload", str(dist))
    pypirc = write_pypirc(tmp_path, {"local": {"repository": f"{plain_http}/legacy/", "username": "u",
                                                "password": "p"}})
    r = alice.run("push", "htmlpush==1.0", "pypi:local", "--pypirc", str(pypirc))
    assert r.rc == 1 and "Traceback" not in r.err
    assert len(r.err_lines) == 1, r.err
    lines = [line for line in r.out.splitlines() if line.strip()]
    assert len(lines) == 1, r.out
    entry = lines[0]
    assert "<" not in entry and "font-family" not in entry and len(entry) <= 200
    # the server reports the repository's status line, never its body (issue 24 finding 2:
    # a push must not read a service's answers back to the user)
    assert entry.startswith("502 upload alice/dev/") and entry.endswith(" 502 Bad Gateway"), entry
    assert "exploded" not in entry and "some proxy" not in entry
    err = r.err_lines[0]
    assert err.startswith(f"devpi: error: push of htmlpush==1.0 to local ({plain_http}/legacy/) failed: "
                          "502 Bad Gateway (last failed action: 502 upload alice/dev/"), err
    assert "exploded" not in err


# -- 9: empty keys ----------------------------------------------------------------------------------------

def test_empty_keys_are_refused(alice):
    assert alice.fail("user", "-m", "alice", "=x") == "devpi: error: empty key in '=x': expected key=value"
    assert alice.fail("user", "-c", "zed", " =x") == "devpi: error: empty key in ' =x': expected key=value"
    assert alice.fail("index", "-c", "alice/q", "=v") == "devpi: error: empty key in '=v': expected key=value"
    assert alice.fail("index", "dev", "+=v") == "devpi: error: empty key in '+=v': expected key=value"
    assert alice.ok("index", "-l").split() == ["alice/dev"]
    assert "zed" not in alice.ok("user", "-l").split()
    assert "=x" not in alice.ok("user", "alice")

