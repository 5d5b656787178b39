"""The `devpi` CLI against a read-restricted index (acl_read): `use` before a login warns in
one line instead of failing, reads then fail in one readable line, and after `devpi login`
the CLI sends the credentials on every read: list, getjson, install, refresh."""
from __future__ import annotations

import subprocess

from support.dists import write_wheel
from test_cli_workflow import import_version, make_venv


def test_use_login_list_install_on_a_private_index(alice, devpi_server, make_cli, tmp_path):
    alice.ok("index", "-c", "secret", "acl_read=alice")
    wheel = write_wheel(tmp_path, "privcli", "1.0")
    alice.ok("upload", "--index", "alice/secret", str(wheel))
    assert "secret" in alice.ok("index", "-l")

    fresh = make_cli("fresh")
    r = fresh.run("use", f"{devpi_server.url}/alice/secret")
    assert r.rc == 0 and "Traceback" not in r.err, r.err
    assert "no read access to index alice/secret" in r.out + r.err
    err = fresh.fail("list", "privcli")
    assert "401" in err and "alice/secret" in err and "privcli-1.0" not in err
    fresh.fail("getjson", "/alice/secret")
    assert "401" in fresh.fail("refresh", "privcli")
    # another user: 403, one line
    alice.ok("user", "-c", "bob", "password=bobpw")  # root-free: any one may create a user
    fresh.ok("login", "bob", "--password", "bobpw")
    err = fresh.fail("list", "privcli")
    assert "403" in err and "privcli-1.0" not in err
    assert "secret" not in fresh.ok("use", "-l")  # the listing leaves it out

    fresh.ok("login", "alice", "--password", "alicepw")
    out = fresh.ok("use", f"{devpi_server.url}/alice/secret")
    assert "no read access" not in out
    out = fresh.ok("list", "privcli")
    assert "privcli-1.0-py3-none-any.whl" in out
    assert "privcli" in fresh.ok("getjson", "/alice/secret")
    assert "refreshed privcli on alice/secret" in fresh.ok("refresh", "privcli")
    python = make_venv(tmp_path / "venv")
    fresh.ok("install", "--venv", str(tmp_path / "venv"), "privcli")
    assert import_version(python, "privcli") == "1.0"
    fresh.ok("logoff")
    r = subprocess.run([str(python), "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "dl"),
                        "--index-url", f"{devpi_server.url}/alice/secret/+simple/", "privcli"],
                       capture_output=True, text=True)
    assert r.returncode != 0  # pip itself, without the login: refused
    assert not (tmp_path / "dl").exists() or not list((tmp_path / "dl").iterdir())
