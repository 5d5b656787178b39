"""The ``devpi`` command against the real server: every command and its error paths.

Errors must be one line on stderr with a non-zero exit and never a traceback
(``DevpiCLI.fail`` asserts exactly that).
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests
from clienthelpers import make_sdist, write_pypirc
from support.dists import sdist_bytes

COMMANDS = ["use", "login", "logoff", "logout", "user", "passwd", "index", "upload", "install", "list",
            "push", "remove", "yank", "unyank", "getjson", "patchjson", "refresh"]


# -- help, version, start-up ----------------------------------------------------------------------

def test_version_without_server(devpi):
    out = devpi.ok("--version")
    assert out.startswith("devpi-client ")


def test_version_shows_server_version(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    out = devpi.ok("--version")
    assert "devpi-client" in out
    assert "devpi-server" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(devpi, command):
    out = devpi.ok(command, "--help")
    assert out.startswith(f"usage: devpi {command}")


def test_main_help_lists_every_command(devpi):
    out = devpi.ok("--help")
    for command in [*COMMANDS, "server"]:
        assert f"    {command} " in out or f"    {command}\n" in out, command


def test_server_help_is_the_servers(devpi):
    # 'devpi server' runs the server's own main, so this is the server's own help
    out = devpi.ok("server", "--help")
    assert "--serverdir" in out


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from devpi.client.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('requests', 'pkginfo', 'build', 'packaging') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_client_never_imports_server():
    """The exceptions are ``devpi server``, which hands its process to the server's entry point
    (instead of starting a second interpreter), and the admin commands (``devpi export|import|
    fsck|gc|gen-config``), which run server/ops/cli.py the same way: client/server.py imports
    those there, inside functions (and extra_check.py to say what to install), nothing else."""
    client = Path(__file__).resolve().parents[2] / "client"
    for path in client.glob("*.py"):
        text = path.read_text()
        if path.name == "server.py":
            imports = re.findall(r"^\s*(?:from|import) devpi\.server.*$", text, re.M)
            assert imports == ["        from devpi.server.main import main as server_main",
                               "        from devpi.server.ops.cli import main as ops_main",
                               "        from devpi.server.extra_check import server_extra_error"], imports
            continue
        assert "import devpi.server" not in text and "from devpi.server" not in text, path


def test_bad_arguments_exit_2_with_one_line(devpi):
    line = devpi.fail("index", "--bogus", rc=2)
    assert "unrecognized arguments: --bogus" in line
    line = devpi.fail("push", "tinypkg==1.0", rc=2)
    assert "required" in line
    devpi.fail("user", "-c", "-m", "x", rc=2)
    devpi.fail("no-such-command", rc=2)
    devpi.fail("use", "--always-set-cfg", "maybe", rc=2)


# -- use ---------------------------------------------------------------------------------------------

def test_server_not_reachable(devpi):
    line = devpi.fail("use", "http://127.0.0.1:9")
    assert line.startswith("devpi: error: cannot reach server at http://127.0.0.1:9")


def test_server_goes_away(devpi, new_server):
    srv = new_server()
    devpi.ok("use", srv.url)
    srv.stop()
    line = devpi.fail("user", "-l")
    assert f"cannot reach server at {srv.url}" in line
    line = devpi.fail("use", "root/pypi")
    assert "cannot reach server" in line


def test_no_server_in_use(devpi):
    assert "no server in use" in devpi.fail("index", "-l")
    assert "no server in use" in devpi.fail("login", "alice", "--password", "x")
    out = devpi.ok("use")
    assert "no server in use" in out


def test_use_root_then_index(devpi, devpi_server):
    out = devpi.ok("use", devpi_server.url)
    assert "no index in use" in out
    out = devpi.ok("use", "root/pypi")
    assert f"current devpi index: {devpi_server.url}/root/pypi (not logged in)" in out
    current = json.loads((devpi.clientdir / "current.json").read_text())
    assert current["index"] == f"{devpi_server.url}/root/pypi"
    assert current["login"] == f"{devpi_server.url}/+login"
    assert "pypisubmit" not in current  # a mirror takes no uploads
    out = devpi.ok("use")
    assert "root/pypi" in out
    out = devpi.ok("use", "-l")
    assert "root/pypi" in out and "mirror" in out


def test_use_full_index_url_and_unknown_index(devpi, devpi_server):
    devpi.ok("use", devpi_server.url + "/root/pypi/")
    line = devpi.fail("use", "root/nope")
    assert "root/nope" in line and "not found" in line
    line = devpi.fail("use", devpi_server.url + "/nobody/nothing")
    assert "nobody/nothing" in line


def test_use_not_a_devpi_server(devpi, devpi_server):
    line = devpi.fail("use", devpi_server.url + "/root/pypi/+f/x")
    assert line.startswith("devpi: error:")


def test_use_delete(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    devpi.ok("use", "--delete")
    assert "no server in use" in devpi.ok("use")


# -- login / logoff / user --------------------------------------------------------------------------

def test_login_logoff_and_token_file(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    devpi.ok("user", "-c", "bob", "password=bobpw")
    out = devpi.ok("login", "bob", "--password", "bobpw")
    assert "logged in 'bob'" in out and "valid for" in out
    auth = devpi.clientdir / "auth.json"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert stat.S_IMODE((devpi.clientdir / "current.json").stat().st_mode) == 0o600
    entry = json.loads(auth.read_text())["auth"][devpi_server.url]
    assert entry[0] == "bob" and entry[1]
    assert "logged in as bob" in devpi.ok("use")
    # the token is sent on requests: creating an own index needs it
    devpi.ok("index", "-c", "dev")
    out = devpi.ok("logoff")
    assert "deleted" in out
    assert "not logged in" in devpi.ok("use")
    assert "not logged in" in devpi.ok("logout")
    assert bob_not_in(auth)


def bob_not_in(auth: Path) -> bool:
    return "bob" not in json.dumps(json.loads(auth.read_text()).get("auth", {}))


def test_login_password_from_stdin(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    devpi.ok("user", "-c", "carl", "password=carlpw")
    out = devpi.ok("login", "carl", input="carlpw\n")
    assert "logged in 'carl'" in out


def test_login_wrong_password(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    devpi.ok("user", "-c", "dora", "password=dorapw")
    line = devpi.fail("login", "dora", "--password", "wrong")
    assert "login failed: 401" in line


def test_token_survives_and_is_checked_on_use(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    devpi.ok("user", "-c", "erin", "password=erinpw")
    devpi.ok("login", "erin", "--password", "erinpw")
    # corrupt the stored token: 'devpi use' notices the server no longer knows us
    auth = devpi.clientdir / "auth.json"
    data = json.loads(auth.read_text())
    data["auth"][devpi_server.url][1] = "garbage"
    auth.write_text(json.dumps(data))
    r = devpi.run("use", devpi_server.url)
    assert r.rc == 0
    assert "no longer valid" in r.err
    assert "not logged in" in r.out


def test_user_commands(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    out = devpi.ok("user", "-c", "frank", "password=frankpw", "email=frank@example.com")
    assert "user created: frank" in out
    assert "409" in devpi.fail("user", "-c", "frank", "password=x")
    assert "frank" in devpi.ok("user", "-l").split()
    devpi.ok("login", "frank", "--password", "frankpw")
    out = devpi.ok("user")
    assert "email=frank@example.com" in out
    devpi.ok("user", "-m", "frank", "email=f@example.org", "title=Frank")
    out = devpi.ok("user", "frank")
    assert "email=f@example.org" in out and "title=Frank" in out
    assert "key=value" in devpi.fail("user", "-m", "frank", "novalue")
    # passwd keeps us logged in (new token) and the new password works
    devpi.ok("passwd", "--password", "frank2")
    devpi.ok("index", "-c", "dev")
    devpi.ok("login", "frank", "--password", "frank2")
    assert "404" in devpi.fail("user", "nobody")
    # deleting asks; without a terminal and without -y it refuses instead of hanging
    assert "pass -y" in devpi.fail("user", "--delete", "frank")
    devpi.ok("user", "--delete", "frank", "-y")
    assert "frank" not in devpi.ok("user", "-l").split()


def test_no_permission(devpi, make_cli, devpi_server):
    devpi.ok("use", devpi_server.url)
    devpi.ok("user", "-c", "gina", "password=ginapw")
    devpi.ok("login", "gina", "--password", "ginapw")
    devpi.ok("index", "-c", "dev")
    other = make_cli("hank")
    other.ok("use", devpi_server.url)
    other.ok("user", "-c", "hank", "password=hankpw")
    other.ok("login", "hank", "--password", "hankpw")
    line = other.fail("index", "gina/dev", "title=hacked")
    assert "403" in line
    line = other.fail("index", "-c", "gina/other")
    assert "403" in line
    line = other.fail("user", "-m", "gina", "email=x@y")
    assert "403" in line
    line = other.fail("index", "--delete", "gina/dev", "-y")
    assert "403" in line


def test_not_logged_in(devpi, devpi_server):
    devpi.ok("use", devpi_server.url)
    assert "not logged in" in devpi.fail("index", "-c", "dev")
    assert "not logged in" in devpi.fail("index", "root/pypi", "title=x")
    assert "not logged in" in devpi.fail("passwd")


# -- index -------------------------------------------------------------------------------------------

def test_index_commands(alice, devpi_server):
    devpi = alice
    out = devpi.ok("index", "-c", "prod", "volatile=False", "title=Production")
    assert "index created: alice/prod" in out and "volatile=False" in out
    assert "409" in devpi.fail("index", "-c", "prod")
    out = devpi.ok("index", "-l")
    assert out.split() == ["alice/dev", "alice/prod"]
    out = devpi.ok("index")
    assert f"{devpi_server.url}/alice/dev:" in out and "bases=root/pypi" in out
    out = devpi.ok("index", "dev", "bases=alice/prod,root/pypi", "mirror_whitelist+=foo", "mirror_whitelist+=bar")
    assert "bases=alice/prod,root/pypi" in out and "mirror_whitelist=foo,bar" in out
    out = devpi.ok("index", "alice/dev", "mirror_whitelist-=foo", "description=hello world")
    assert "mirror_whitelist=bar" in out and "description=hello world" in out
    # key=value without index name: the current index
    out = devpi.ok("index", "title=Dev")
    assert "title=Dev" in out
    line = devpi.fail("index", "dev", "mirror_whitelist-=nothere")
    assert "400" in line
    line = devpi.fail("index", "dev", "bases=alice/nope")
    assert "400" in line
    assert "404" in devpi.fail("index", "alice/nope")
    assert "pass -y" in devpi.fail("index", "--delete", "prod")
    line = devpi.fail("index", "--delete", "prod", "-y")  # non-volatile
    assert "403" in line
    devpi.ok("index", "-c", "tmp")
    out = devpi.ok("index", "--delete", "tmp", "-y")
    assert "index deleted: alice/tmp" in out
    assert devpi.ok("index", "-l").split() == ["alice/dev", "alice/prod"]


def test_index_patch_without_keyvalue_feature(alice, devpi_server):
    """Servers without server-keyvalue-parsing get a merged dict (like the original client sends)."""
    current = alice.clientdir / "current.json"
    data = json.loads(current.read_text())
    data["features"] = []
    current.write_text(json.dumps(data))
    out = alice.ok("index", "dev", "mirror_whitelist+=foo", "title=Merged")
    assert "mirror_whitelist=foo" in out and "title=Merged" in out and "bases=root/pypi" in out


# -- getjson / patchjson / refresh ---------------------------------------------------------------------

def test_getjson_and_patchjson(alice, devpi_server, tmp_path):
    out = alice.ok("getjson", "/alice/dev")
    data = json.loads(out)
    assert data["type"] == "indexconfig"
    data = json.loads(alice.ok("getjson", "+api"))
    assert data["result"]["index"] == f"{devpi_server.url}/alice/dev"
    data = json.loads(alice.ok("getjson", devpi_server.url + "/+api"))
    assert data["type"] == "apiconfig"
    r = alice.run("getjson", "/alice/nope")
    assert r.rc == 1 and len(r.err_lines) == 1 and "404" in r.err
    body = tmp_path / "patch.json"
    body.write_text(json.dumps({"title": "patched"}))
    alice.ok("patchjson", "/alice/dev", str(body))
    assert json.loads(alice.ok("getjson", "/alice/dev"))["result"]["title"] == "patched"
    body.write_text("{not json")
    assert "not valid JSON" in alice.fail("patchjson", "/alice/dev", str(body))


def test_refresh(alice, devpi_server):
    # the upstream of root/pypi is unreachable in tests: refreshing an unknown project fails cleanly
    r = alice.run("refresh", "does-not-exist", "--index", "root/pypi")
    assert "Traceback" not in r.err
    if r.rc != 0:
        assert len(r.err_lines) == 1 and "could not refresh does-not-exist" in r.err


def test_index_option_resolution(alice):
    assert "invalid index name" in alice.fail("list", "--index", "a/b/c")


def test_clientdir_option(devpi, devpi_server, tmp_path):
    other = tmp_path / "otherclientdir"
    devpi.ok("--clientdir", str(other), "use", devpi_server.url)
    assert (other / "current.json").exists()
    devpi.ok("use", "--clientdir", str(other), "root/pypi")
    assert "root/pypi" in json.loads((other / "current.json").read_text())["index"]
    assert not (devpi.clientdir / "current.json").exists()


def test_default_clientdir_is_user_config_dir(devpi, tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    r = devpi.run("use", env={**env, "DEVPI_CLIENTDIR": ""})
    assert r.rc == 0
    assert str(tmp_path / "xdg" / "devpi" / "client") in r.out


def test_set_cfg_writes_pip_and_uv_config(alice, devpi_server, tmp_path):
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    pipconf = home / ".config" / "pip" / "pip.conf"
    pipconf.parent.mkdir(parents=True)
    pipconf.write_text("# my settings\n[global]\ntimeout = 60\n\n[install]\nno-compile = true\n")
    out = alice.ok("use", "--set-cfg", env=env)
    simple = f"{devpi_server.url}/alice/dev/+simple/"
    assert "pip: wrote" in out and "uv:  wrote [[index]] devpi (default)" in out
    text = pipconf.read_text()
    assert f"index-url = {simple}" in text
    assert "# my settings" in text and "timeout = 60" in text and "no-compile = true" in text
    uvtoml = home / ".config" / "uv" / "uv.toml"
    assert tomllib.loads(uvtoml.read_text())["index"] == [{"name": "devpi", "url": simple, "default": True}]
    # pip itself sees it
    pipcfg = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            env={**os.environ, **env, "PIP_CONFIG_FILE": ""})
    assert f"global.index-url='{simple}'" in pipcfg.stdout
    out = alice.ok("use", env=env)
    assert "(the current index)" in out
    # switching index again rewrites it (not duplicated)
    alice.ok("use", "root/pypi", "--set-cfg", env=env)
    text = pipconf.read_text()
    assert text.count("index-url") == 1 and "root/pypi/+simple/" in text


def test_set_cfg_into_one_venv(alice, devpi_server, tmp_path):
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    venv = tmp_path / "venv"
    venv.mkdir()
    out = alice.ok("use", "--venv", str(venv), "--set-cfg", env=env)
    assert f"index-url = {devpi_server.url}/alice/dev/+simple/" in (venv / "pip.conf").read_text()
    assert not (home / ".config" / "pip" / "pip.conf").exists()
    assert not (home / ".config" / "uv" / "uv.toml").exists()
    assert f"venv for install/set-cfg: {venv}" in out
    assert "does not exist" in alice.fail("use", "--venv", str(tmp_path / "missing"))


def test_direct_requests_use_devpi_auth_header(alice, devpi_server):
    """The stored token is what the server hands out at /+login and it is accepted as X-Devpi-Auth."""
    auth = json.loads((alice.clientdir / "auth.json").read_text())["auth"][devpi_server.url]
    r = devpi_server.api("GET", "/+api", auth=tuple(auth))
    assert r.json()["result"]["authstatus"][:2] == ["ok", "alice"]


def test_upload_requires_upload_index(devpi, devpi_server, tmp_path):
    devpi.ok("use", devpi_server.url + "/root/pypi")
    line = devpi.fail("upload", str(tmp_path))
    assert "does not support upload" in line


def test_upload_not_logged_in(alice, devpi_server, tmp_path):
    dist = tmp_path / "tinypkg-1.0.tar.gz"
    make_sdist(dist)
    alice.ok("logoff")
    line = alice.fail("upload", str(dist))  # found before sending: the index's acl_upload names alice
    assert "not logged in" in line and "alice/dev" in line


def test_upload_errors(alice, tmp_path):
    assert "no such file" in alice.fail("upload", str(tmp_path / "missing.whl"))
    bogus = tmp_path / "notes.txt"
    bogus.write_text("x")
    assert "not a distribution file" in alice.fail("upload", str(bogus))
    broken = tmp_path / "broken-1.0.tar.gz"
    broken.write_bytes(b"not a tarball")
    assert "cannot read package metadata" in alice.fail("upload", str(broken))
    assert "no pyproject.toml or setup.py" in alice.fail("upload", cwd=tmp_path)


def test_upload_files_list_and_remove(alice, devpi_server, tmp_path):
    dists = tmp_path / "dists"
    dists.mkdir()
    for v in ("1.0", "1.1", "2.0", "2.1.dev1"):
        make_sdist(dists / f"handmade-{v}.tar.gz", "handmade", v)
    out = alice.ok("upload", "--dry-run", str(dists))
    assert out.count("skipped upload (dry run)") == 4
    out = alice.ok("upload", "--dry-run", "--only-latest", str(dists))
    assert out.count("skipped upload (dry run)") == 1 and "handmade-2.1.dev1.tar.gz" in out
    out = alice.ok("upload", str(dists / "handmade-1.0.tar.gz"), str(dists))
    assert out.count("uploaded handmade-") == 4  # the file given twice is sent once
    assert f"{devpi_server.url}/alice/dev/" in out
    assert alice.ok("list").split() == ["handmade"]
    out = alice.ok("list", "handmade")
    assert "handmade 2.1.dev1" in out and "handmade 1.1" in out and "handmade 1.0" not in out
    assert "1 older versions not shown" in out
    out = alice.ok("list", "handmade", "--all")
    assert "handmade 1.0" in out and "(alice/dev)" in out
    out = alice.ok("list", "handmade<2")
    assert "handmade 2.0" not in out and "handmade 1.1" in out
    # --ignore-bases: the dead test upstream of root/pypi must not matter here
    assert "not found" in alice.fail("list", "nothere", "--ignore-bases")
    assert "no version of handmade" in alice.fail("list", "handmade>5")
    assert "invalid package spec" in alice.fail("list", "bad spec!")
    # remove one version, then versions by spec, then the project
    assert "pass -y" in alice.fail("remove", "handmade==1.0")
    out = alice.ok("remove", "handmade==1.0", "-y")
    assert "removed handmade 1.0" in out
    assert "handmade 1.0" not in alice.ok("list", "handmade", "--all")
    out = alice.ok("remove", "handmade<2", "-y")
    assert "removed handmade 1.1" in out
    out = alice.ok("remove", "handmade", "-y")
    assert "removed project handmade" in out
    assert alice.ok("list").split() == []
    assert "not found" in alice.fail("remove", "handmade", "-y")


def test_remove_on_non_volatile_needs_force(alice, tmp_path):
    alice.ok("index", "-c", "prod", "volatile=False")
    dist = tmp_path / "solid-1.0.tar.gz"
    make_sdist(dist, "solid", "1.0")
    alice.ok("upload", "--index", "prod", str(dist))
    line = alice.fail("remove", "--index", "prod", "solid==1.0", "-y")
    assert "403" in line and "--force" in line
    alice.ok("remove", "--index", "prod", "--force", "solid==1.0", "-y")
    assert "not found" in alice.fail("list", "solid", "--index", "prod")


def test_remove_single_file_by_url(alice, tmp_path):
    dist = tmp_path / "single-1.0.tar.gz"
    make_sdist(dist, "single", "1.0")
    out = alice.ok("upload", str(dist))
    url = [line for line in out.splitlines() if line.startswith("http")][0]
    assert requests.get(url, timeout=30).content == dist.read_bytes()
    alice.ok("remove", url, "-y")
    assert requests.get(url, timeout=30).status_code in (404, 410)


def test_upload_conflict_on_non_volatile(alice, tmp_path):
    alice.ok("index", "-c", "prod", "volatile=False")
    dist = tmp_path / "fixed-1.0.tar.gz"
    make_sdist(dist, "fixed", "1.0")
    alice.ok("upload", "--index", "alice/prod", str(dist))
    alice.ok("upload", "--index", "alice/prod", str(dist))  # identical content: accepted
    make_sdist(dist, "fixed", "1.0")  # new mtime inside the tarball -> different bytes
    dist.write_bytes(dist.read_bytes() + b"\0" * 10)
    line = alice.fail("upload", "--index", "alice/prod", str(dist))
    assert line.startswith("devpi: error: 409 FAIL fixed-1.0.tar.gz")


def test_push_errors(alice, make_cli, devpi_server, tmp_path):
    dist = tmp_path / "pushme-1.0.tar.gz"
    make_sdist(dist, "pushme", "1.0")
    alice.ok("upload", str(dist))
    alice.ok("index", "-c", "prod", "volatile=False")
    assert "need NAME==VERSION" in alice.fail("push", "pushme", "alice/prod")
    assert "404" in alice.fail("push", "pushme==1.0", "alice/nope")
    assert "404" in alice.fail("push", "pushme==9.9", "alice/prod")
    assert "no section [nope]" in alice.fail("push", "pushme==1.0", "pypi:nope",
                                             "--pypirc", str(write_pypirc(tmp_path, {})))
    assert "does not exist" in alice.fail("push", "pushme==1.0", "pypi:x", "--pypirc", str(tmp_path / "none"))
    alice.ok("push", "pushme==1.0", "alice/prod")
    assert "skip_identical" in alice.ok("push", "pushme==1.0", "alice/prod")  # the same file: a no-op
    name, other = sdist_bytes("pushme", "1.0", summary="other bytes")
    assert name == dist.name and other != dist.read_bytes()
    dist.write_bytes(other)
    alice.ok("upload", str(dist))  # alice/dev is volatile: the name now has other bytes there
    line = alice.fail("push", "pushme==1.0", "alice/prod")
    assert "409" in line and "non-volatile" in line
    # another user may not push into alice's index
    other = make_cli("ivan")
    other.ok("use", devpi_server.url + "/alice/dev")
    other.ok("user", "-c", "ivan", "password=ivanpw")
    other.ok("login", "ivan", "--password", "ivanpw")
    other.ok("index", "-c", "dev")
    line = other.fail("push", "pushme==1.0", "alice/prod")
    assert "401" in line or "403" in line
    other.ok("logoff")
    line = other.fail("push", "pushme==1.0", "ivan/dev")
    assert "not logged in" in line


def test_list_shows_test_results(alice, devpi_server, tmp_path):
    dist = tmp_path / "tested-1.0.tar.gz"
    make_sdist(dist, "tested", "1.0")
    out = alice.ok("upload", str(dist))
    url = [line for line in out.splitlines() if line.startswith("http")][0]

    def report(host: str, retcode: int) -> dict:
        return {"reportversion": "1", "host": host, "platform": "linux",
                "testenvs": {"py311": {"python": {"version": "3.11.7 (main)"},
                                       "setup": [{"command": ["pip", "install"], "retcode": 0, "output": ""}],
                                       "test": [{"command": ["pytest", "-x"], "retcode": retcode,
                                                 "output": "FAILED test_x.py::test_y"}]}}}

    for body in (report("ci1", 0), report("ci2", 1)):
        r = requests.post(url, json=body, headers={"Accept": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
    out = alice.ok("list", "tested")
    assert "ci1 linux py311 3.11.7 tests passed" in out
    assert "ci2 linux py311 3.11.7 tests failed" in out
    assert "FAILED test_x.py::test_y" not in out
    out = alice.ok("list", "tested", "-f")
    assert "command: pytest -x" in out and "FAILED test_x.py::test_y" in out
