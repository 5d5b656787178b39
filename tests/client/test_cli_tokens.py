"""``devpi token create|list|revoke`` and ``devpi login --token``, as a user types them."""
from __future__ import annotations

import re

from support.dists import write_wheel

TOKEN = re.compile(r"^devpi_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$")


def test_create_list_login_upload_revoke(alice, devpi_server, tmp_path):
    devpi = alice
    devpi.ok("index", "-c", "prod")
    out = devpi.ok("token", "create", "--index", "alice/dev", "--allow", "upload", "--expires", "30d",
                   "--description", "CI job")
    token = out.strip()
    assert TOKEN.match(token), out  # the token alone on stdout: TOKEN=$(devpi token create ...)
    listing = devpi.ok("token", "list")
    token_id = token.split("_")[1]
    assert token_id in listing and "upload on alice/dev" in listing and "CI job" in listing
    assert token.split("_", 2)[2] not in listing  # the whole secret (it may hold "_" itself)

    # a CI job logs in with the token (from stdin: not in its command line)
    ci = alice.__class__(tmp_path / "ci-clientdir", tmp_path)
    ci.ok("use", f"{devpi_server.url}/alice/dev")
    out = ci.ok("login", "--token", "-", input=token + "\n")
    assert "logged in 'alice'" in out and token_id in out
    dist = tmp_path / "dist"
    dist.mkdir()
    write_wheel(dist, "tokpkg", "1.0")
    ci.ok("upload", "--from-dir", str(dist))
    assert "tokpkg" in ci.ok("list")
    # outside its scope: one line each
    err = ci.fail("upload", "--index", "alice/prod", "--from-dir", str(dist))
    assert "403" in err
    err = ci.fail("token", "create", "--allow", "upload")
    assert "403" in err and "token" in err
    assert "403" in ci.fail("passwd", "--password", "stolen")
    assert "403" in ci.fail("index", "alice/dev", "title=pwned")

    # the owner revokes it: the CI client is refused at once
    assert token_id in devpi.ok("token", "revoke", token_id)
    line = ci.fail("upload", "--from-dir", str(dist))  # found before sending anything
    assert "login as alice is not valid any more (expired or revoked?)" in line
    assert "has no tokens" in devpi.ok("token", "list")


def test_cli_input_errors_are_one_line(alice):
    assert "unknown action" in alice.fail("token", "create", "--allow", "upload,everything")
    assert "--allow" in alice.fail("token", "create")
    assert "no duration" in alice.fail("token", "create", "--allow", "upload", "--expires", "soon")
    assert "400" in alice.fail("token", "create", "--allow", "upload", "--expires", "400d")
    assert "400" in alice.fail("token", "create", "--allow", "upload", "--description", "x" * 300)
    assert "which token" in alice.fail("token", "revoke")
    assert "404" in alice.fail("token", "revoke", "nosuchtoken")
    assert "login failed" in alice.fail("login", "--token", "devpi_" + "a" * 12 + "_" + "A" * 43)
    assert "need a user name" in alice.fail("login")
