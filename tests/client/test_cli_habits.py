"""Habits of users coming from pip and from devpi-client 7.3 (issue 30), each through the
real ``devpi`` command against the real server."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests


@pytest.mark.parametrize("suffix", ["/+simple/", "/+simple", "/+simple/some-project/"])
def test_use_accepts_the_pip_url_of_an_index(devpi, devpi_server, suffix):
    out = devpi.ok("use", devpi_server.url + "/root/pypi" + suffix)
    assert "pip URL: using the index" in out
    assert f"current devpi index: {devpi_server.url}/root/pypi " in out
    assert json.loads((devpi.clientdir / "current.json").read_text())["index"] == f"{devpi_server.url}/root/pypi"


def test_use_of_a_simple_url_of_an_unknown_index_names_the_index(devpi, devpi_server):
    line = devpi.fail("use", devpi_server.url + "/nobody/nothing/+simple/")
    assert "nobody/nothing" in line and "+simple" not in line and "not found" in line


def test_use_https_against_a_plain_http_server_fails_at_once_and_says_why(devpi, devpi_server):
    https = devpi_server.url.replace("http://", "https://")
    line = devpi.fail("use", https + "/root/pypi")  # the handshake's error, not a timeout
    assert "does not speak TLS" in line and devpi_server.url in line


def test_yank_and_unyank_with_a_reason_shown_by_list_and_honoured_by_pip(alice, devpi_server, tmp_path):
    from support.dists import write_wheel
    from support.pipinstall import installed, pip_install

    dists = tmp_path / "dists"
    dists.mkdir()
    for v in ("1.0", "2.0"):
        write_wheel(dists, "yanky", v)
    alice.ok("upload", str(dists))
    out = alice.ok("yank", "yanky==2.0", "--reason", "breaks on Windows")
    assert "yanky 2.0 yanked on alice/dev" in out
    listing = alice.ok("list", "yanky")
    [line_2] = [ln for ln in listing.splitlines() if "yanky-2.0" in ln]
    [line_1] = [ln for ln in listing.splitlines() if "yanky-1.0" in ln]
    assert "[yanked: breaks on Windows]" in line_2 and "yanked" not in line_1
    index = f"{devpi_server.url}/alice/dev/+simple/"
    assert pip_install(index, tmp_path / "t1", "yanky").returncode == 0
    assert installed(tmp_path / "t1") == {"yanky": "1.0"}  # pip skips the yanked newest
    assert pip_install(index, tmp_path / "t2", "yanky==2.0").returncode == 0  # pinned: still installable
    assert "yanky 2.0 unyanked" in alice.ok("unyank", "yanky==2.0")
    assert "yanked" not in alice.ok("list", "yanky")
    assert pip_install(index, tmp_path / "t3", "yanky").returncode == 0
    assert installed(tmp_path / "t3") == {"yanky": "2.0"}
    # a range asks first; -y yanks every match
    assert "pass -y" in alice.fail("yank", "yanky<3")
    assert alice.ok("yank", "yanky<3", "-y").count("yanked on alice/dev") == 2


def test_yank_errors_are_one_line(alice, make_cli, devpi_server, tmp_path):
    from support.dists import write_wheel

    dists = tmp_path / "d"
    dists.mkdir()
    write_wheel(dists, "yanky", "1.0")
    alice.ok("upload", str(dists))
    assert "which version" in alice.fail("yank", "yanky")
    assert "no version of yanky" in alice.fail("yank", "yanky==9.9")
    assert "not found" in alice.fail("yank", "nothere==1.0")
    assert "--reason" in alice.fail("yank", "yanky==1.0", "--reason", "x" * 2000)
    assert "--reason" in alice.fail("yank", "yanky==1.0", "--reason", "two\nlines")
    bob = make_cli("bob")
    bob.ok("use", devpi_server.url)
    bob.ok("user", "-c", "bob", "password=bobpw")
    bob.ok("login", "bob", "--password", "bobpw")
    line = bob.fail("yank", "yanky==1.0", "--index", "alice/dev")
    assert "cannot yank yanky 1.0 on alice/dev" in line and ("403" in line or "permission" in line)


def test_root_passwd_on_an_existing_server_dir_is_taken_once_then_warned_about(devpi, new_server):
    """The README's order: `devpi server` first (root without a password), then the tour's
    `devpi server --root-passwd s3cret`: the password takes; a later different one is
    refused with a warning, and `devpi passwd root` is the way to change it."""
    s = new_server(root_password="")
    devpi.ok("use", s.url)
    devpi.ok("login", "root", "--password", "")
    s.stop()
    s.root_password = "s3cret"
    s.start()
    assert "root had no password: set it from --root-passwd" in s.log_text()
    devpi.fail("login", "root", "--password", "")  # the empty one no longer works
    devpi.ok("login", "root", "--password", "s3cret")
    s.stop()
    s.root_password = "other"
    s.start()
    assert "--root-passwd is ignored: root already has another password" in s.log_text()
    devpi.fail("login", "root", "--password", "other")
    devpi.ok("login", "root", "--password", "s3cret")
    devpi.ok("passwd", "root", "--password", "n3w-s3cret")  # the documented way to change it
    devpi.ok("login", "root", "--password", "n3w-s3cret")
    devpi.fail("login", "root", "--password", "s3cret")


def _tar_gz(path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _zip(path, members: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_legacy_build_formats_are_stored_and_listed_as_the_original_does(alice, devpi_server, tmp_path):
    """bdist_dumb and egg uploads (old CI scripts still make them): stored, listed, served;
    pip ignores them and installs the wheel."""
    from support.dists import write_wheel
    from support.pipinstall import installed, pip_install

    dists = tmp_path / "dists"
    dists.mkdir()
    _tar_gz(dists / "oldie-1.0.linux-x86_64.tar.gz", {"./usr/lib/python3/site-packages/oldie.py": b"x = 1\n"})
    _zip(dists / "oldie-1.0-py3.11.egg", {"oldie.py": b"x = 1\n", "EGG-INFO/PKG-INFO":
                                          b"Metadata-Version: 1.1\nName: oldie\nVersion: 1.0\n"})
    write_wheel(dists, "oldie", "1.0")
    out = alice.ok("upload", str(dists))
    for fn in ("oldie-1.0.linux-x86_64.tar.gz", "oldie-1.0-py3.11.egg", "oldie-1.0-py3-none-any.whl"):
        assert fn in out
    listing = alice.ok("list", "oldie")
    for fn in ("oldie-1.0.linux-x86_64.tar.gz", "oldie-1.0-py3.11.egg", "oldie-1.0-py3-none-any.whl"):
        assert fn in listing
    page = requests.get(f"{devpi_server.url}/alice/dev/+simple/oldie/", timeout=30).text
    assert "oldie-1.0-py3.11.egg" in page and "oldie-1.0.linux-x86_64.tar.gz" in page
    index = f"{devpi_server.url}/alice/dev/+simple/"
    result = pip_install(index, tmp_path / "t", "oldie")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "t") == {"oldie": "1.0"}
    # the shapes stay narrow: another version's file is still refused for 1.0
    r = requests.post(f"{devpi_server.url}/alice/dev/", data={":action": "file_upload", "name": "oldie",
                      "version": "1.0"}, files={"content": ("oldie-1.0.1.tar.gz", b"x")},
                      auth=("alice", "alicepw"), timeout=30)
    assert r.status_code == 400 and "does not contain version" in r.json()["message"]


def test_an_empty_password_is_set_as_the_original_sets_it(alice, devpi_server):
    """PATCH /alice {"password": ""} (what `devpi user -m alice password=` sends): the
    original sets it and answers with a new login; it is not a silent no-op."""
    assert "user modified: alice" in alice.ok("user", "-m", "alice", "password=")
    alice.ok("index", "-c", "more")  # the new login the server sent was kept (the old one is void now)
    alice.fail("login", "alice", "--password", "alicepw")
    alice.ok("login", "alice", "--password", "")
    r = requests.patch(f"{devpi_server.url}/alice", json={"password": ""}, auth=("alice", ""), timeout=30)
    assert r.status_code == 200 and r.json()["type"] == "userpassword" and r.json()["result"]["password"]


def test_set_cfg_writes_uvs_index_table_and_uv_then_installs_from_devpi(alice, devpi_server, tmp_path):
    """A uv.toml that already names a default [[index]] (which made uv ignore the old
    top-level index-url): devpi's [[index]] becomes the default, comments and other tables
    stay, and uv itself then installs a package that only devpi has."""
    import shutil
    import subprocess
    import sys
    import tomllib

    from support.dists import write_wheel

    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    uvtoml = home / ".config" / "uv" / "uv.toml"
    uvtoml.parent.mkdir(parents=True)
    uvtoml.write_text('# my uv settings\nindex-url = "http://127.0.0.1:9/old/"\nnative-tls = false\n\n'
                      '[[index]]\nname = "corp"  # the company index\nurl = "http://127.0.0.1:9/simple/"\n'
                      'default = true\n\n[[index]]\nname = "extra"\nurl = "http://127.0.0.1:9/extra/"\n'
                      'explicit = true\n\n[pip]\ncompile-bytecode = false\n')
    dists = tmp_path / "dists"
    dists.mkdir()
    write_wheel(dists, "only-on-devpi", "1.0")
    alice.ok("upload", str(dists))
    r = alice.run("use", "--set-cfg", env=env)
    assert r.rc == 0, r.err
    simple = f"{devpi_server.url}/alice/dev/+simple/"
    assert "index 'corp' was uv's default: now explicit" in r.err and "deprecated top-level index-url" in r.err
    text = uvtoml.read_text()
    assert "# my uv settings" in text and "# the company index" in text
    doc = tomllib.loads(text)
    assert "index-url" not in doc and doc["native-tls"] is False and doc["pip"] == {"compile-bytecode": False}
    assert [(i["name"], i.get("default"), i.get("explicit")) for i in doc["index"]] == [
        ("corp", None, True), ("extra", None, True), ("devpi", True, None)]
    assert f"uv config {uvtoml}: default index = {simple} (the current index)" in alice.ok("use", env=env)
    # switching the index rewrites the one table
    alice.ok("use", "root/pypi", "--set-cfg", env=env)
    alice.ok("use", "alice/dev", "--set-cfg", env=env)
    assert [i["name"] for i in tomllib.loads(uvtoml.read_text())["index"]] == ["corp", "extra", "devpi"]
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    # uv reads its user config here (the test session sets UV_NO_CONFIG); anything not on
    # loopback goes to a dead proxy, so only the config can make this install work
    uv_env = {**{k: v for k, v in alice.env.items() if k != "UV_NO_CONFIG"}, **env, "UV_NO_PROGRESS": "1",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": "127.0.0.1"}
    run = subprocess.run([uv, "pip", "install", "--python", sys.executable, "--target", str(tmp_path / "t"),
                          "--no-cache", "only-on-devpi"], capture_output=True, text=True, timeout=120,
                         env=uv_env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "t" / "only_on_devpi").is_dir()


def test_set_cfg_refuses_to_rewrite_a_broken_uv_toml(alice, tmp_path):
    home = tmp_path / "home"
    uvtoml = home / ".config" / "uv" / "uv.toml"
    uvtoml.parent.mkdir(parents=True)
    uvtoml.write_text("[[index]\nname = 'x'\n")
    line = alice.fail("use", "--set-cfg", env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    assert "not valid TOML" in line and str(uvtoml) in line
    assert uvtoml.read_text() == "[[index]\nname = 'x'\n"


def test_upload_fails_before_building_when_it_cannot_succeed(alice, make_cli, devpi_server, new_server, tmp_path):
    """Not logged in, another user's index, --with-docs without docs, a server gone: each is
    one line and no "building" line (a build costs seconds to minutes)."""
    from clienthelpers import write_project

    proj = write_project(tmp_path / "src")
    line = alice.fail("upload", "--with-docs", cwd=proj)
    assert "no documentation found" in line
    assert "building" not in alice.run("upload", "--with-docs", cwd=proj).out
    assert "does not exist" in alice.fail("upload", "--with-docs", str(tmp_path / "nodocs"), cwd=proj)

    bob = make_cli("bob")
    bob.ok("use", devpi_server.url + "/alice/dev")
    r = bob.run("upload", "--no-isolation", cwd=proj)
    assert r.rc == 1 and "building" not in r.out
    assert "not logged in: uploading to alice/dev needs a login (acl_upload: alice)" in r.err
    bob.ok("user", "-c", "bob", "password=bobpw")
    bob.ok("login", "bob", "--password", "bobpw")
    r = bob.run("upload", "--no-isolation", cwd=proj)
    assert r.rc == 1 and "building" not in r.out and "user bob may not upload to alice/dev" in r.err
    # alice lets every logged-in user upload: bob's upload now goes through
    alice.ok("index", "alice/dev", "acl_upload=alice,:AUTHENTICATED:")
    assert "uploaded tinypkg-1.0" in bob.ok("upload", "--no-isolation", cwd=proj)

    gone = new_server()
    gone.create_index(gone.create_user("carol", "carolpw"), "dev", bases=[])
    carol = make_cli("carol")
    carol.ok("use", gone.url + "/carol/dev")
    carol.ok("login", "carol", "--password", "carolpw")
    gone.stop()
    r = carol.run("upload", "--no-isolation", cwd=proj)  # the current index: no request before this check
    assert r.rc == 1 and "building" not in r.out and "cannot reach server" in r.err


def test_twine_with_a_wrong_password_is_told_authentication_failed(alice, devpi_server, tmp_path):
    import os
    import subprocess
    import sys

    from support.dists import write_wheel

    wheel = write_wheel(tmp_path, "twined", "1.0")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINE_")}
    done = subprocess.run([sys.executable, "-m", "twine", "upload", "--repository-url",
                           f"{devpi_server.url}/alice/dev/", "-u", "alice", "-p", "wrong", "--non-interactive",
                           "--disable-progress-bar", str(wheel)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode != 0
    assert "authentication failed" in done.stdout + done.stderr
    assert "authentication required" not in done.stdout + done.stderr


def test_toxs_packaging_envs_are_not_listed_as_untested(alice, devpi_server, tmp_path):
    """tox 4 reports its packaging envs (.pkg_external, .pkg_external_sdist_meta) next to the
    real ones; they run no tests, so `devpi list` and the web page leave them out, unless
    their setup failed (that explains the real envs' failure)."""
    from support.dists import write_wheel

    dists = tmp_path / "d"
    dists.mkdir()
    write_wheel(dists, "toxed", "1.0")
    alice.ok("upload", str(dists))
    page = requests.get(f"{devpi_server.url}/alice/dev/toxed/1.0", headers={"Accept": "application/json"},
                        timeout=30).json()["result"]
    href = next(link["href"] for link in page["+links"] if link["rel"] == "releasefile")
    ok = {"setup": [{"command": ["pip", "install"], "retcode": "0", "output": ""}],
          "test": [{"command": ["pytest"], "retcode": "0", "output": "1 passed"}], "python": {"version": "3.11.7"}}
    pkg = {"setup": [{"command": ["build"], "retcode": "0", "output": ""}], "test": []}
    report = {"host": "vm", "platform": "linux", "installpkg": {}, "testenvs": {
        "py311": ok, ".pkg_external": pkg, ".pkg_external_sdist_meta": pkg}}
    r = requests.post(href, json=report, auth=("alice", "alicepw"), timeout=30)
    assert r.status_code == 200, r.text
    listing = alice.ok("list", "toxed")
    assert "vm linux py311 3.11.7 tests passed" in listing
    assert ".pkg" not in listing and "no tests were run" not in listing
    web = requests.get(f"{devpi_server.url}/alice/dev/toxed/1.0", headers={"Accept": "text/html"}, timeout=30).text
    assert "py311" in web and ".pkg_external" not in web
    # a packaging env whose setup failed is what the user needs to see
    broken = {"setup": [{"command": ["build"], "retcode": "1", "output": "no setup.py"}], "test": []}
    report["testenvs"] = {".pkg_external": broken}
    assert requests.post(href, json=report, auth=("alice", "alicepw"), timeout=30).status_code == 200
    assert "vm linux .pkg_external ? setup failed" in alice.ok("list", "toxed")


def test_a_push_conflict_names_the_file_that_conflicts(alice, tmp_path):
    """Docs pushed identically, the wheel changed: the 409 names the wheel, not the doc zip."""
    from support.dists import write_wheel

    d1, d2, docs = tmp_path / "d1", tmp_path / "d2", tmp_path / "docs"
    for d in (d1, d2, docs):
        d.mkdir()
    write_wheel(d1, "pushy", "1.0")
    write_wheel(d2, "pushy", "1.0", module_body="X = 2\n")
    (docs / "index.html").write_text("<html><body>docs</body></html>")
    alice.ok("index", "-c", "prod", "bases=", "volatile=False")
    alice.ok("upload", "--with-docs", str(docs), str(d1))
    alice.ok("push", "pushy==1.0", "alice/prod")
    alice.ok("upload", str(d2))  # alice/dev is volatile: the wheel is replaced, the docs stay
    line = alice.fail("push", "pushy==1.0", "alice/prod")
    assert "409" in line and "pushy-1.0-py3-none-any.whl already exists" in line and "doc.zip" not in line


def _run_in_pty(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> tuple[int, bytes]:
    """Run a command with stdout and stderr on a pseudo-terminal (as in a user's terminal);
    returns its exit code and everything it drew."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env, cwd=cwd)
    os.close(follower)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                proc.kill()
                break
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not data:
                break
            out += data
    finally:
        os.close(leader)
    return proc.wait(timeout), bytes(out)


def test_upload_progress_is_throttled_on_a_terminal_and_absent_in_logs(alice, devpi_server, tmp_path):
    """A 40 MB file: on a terminal the progress line shows speed and is redrawn a bounded
    number of times (not once per 16 kB chunk: 2,400 here); piped to a log, no progress."""
    import os

    from clienthelpers import devpi_command
    from support.dists import write_wheel

    dists = tmp_path / "big"
    dists.mkdir()
    write_wheel(dists, "bigone", "1.0", module_body="DATA = " + repr(os.urandom(30 * 1024 * 1024).hex()[:40_000_000]))
    [wheel] = dists.glob("*.whl")
    assert wheel.stat().st_size > 15 * 1024 * 1024
    rc, drawn = _run_in_pty([*devpi_command(), "upload", str(wheel)], alice.env, tmp_path)
    assert rc == 0, drawn.decode(errors="replace")[-2000:]
    text = drawn.decode(errors="replace")
    assert "uploading bigone" in text and "B/s" in text and "uploaded bigone-1.0" in text
    assert text.count("\r") < 200  # tqdm redraws at most twice a second; the upload takes seconds
    piped = alice.run("upload", str(wheel))
    assert piped.rc == 0 and "\r" not in piped.err and "uploading bigone" not in piped.err


def test_the_order_of_checks_follows_the_original(alice, make_cli, devpi_server):
    """Which error a request meets first, as devpi-server 6 answers it (user names are
    public, so saying "no user" leaks nothing acl_read hides)."""
    line = alice.fail("index", "-c", "not_exists/dev")
    assert "404" in line and "no user 'not_exists'" in line
    anon = make_cli("anon")
    anon.ok("use", devpi_server.url)
    line = anon.fail("user", "-m", "alice", "email=x@example.org")
    assert "403" in line
    root = make_cli("root")
    root.ok("use", devpi_server.url)
    root.ok("login", "root", "--password", "root")
    root.ok("user", "--delete", "alice", "-y")
    line = alice.fail("index", "-c", "alice/again")  # alice's login outlived her user
    assert "404" in line and "no user 'alice'" in line


def test_push_over_a_file_of_a_volatile_index_logs_the_overwrite(alice, tmp_path):
    from support.dists import write_wheel

    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    write_wheel(d1, "pushover", "1.0")
    write_wheel(d2, "pushover", "1.0", module_body="X = 2\n")
    alice.ok("index", "-c", "qa", "bases=")  # volatile
    alice.ok("upload", "--index", "alice/qa", str(d1))
    alice.ok("upload", str(d2))
    for count in (1, 2):
        alice.ok("push", "pushover==1.0", "alice/qa")
        doc = json.loads(alice.ok("getjson", "/alice/qa/pushover/1.0"))
        [link] = [lk for lk in doc["result"]["+links"] if lk["rel"] == "releasefile"]
        overwrites = [e for e in link["log"] if e["what"] == "overwrite"]
        assert [e["count"] for e in overwrites] == [count], link["log"]


def test_a_doc_zip_without_version_or_releases_is_told_so_first(alice, tmp_path):
    """The original answers "no version and no releases" before looking at the zip."""
    import requests as rq

    r = rq.post(json.loads((alice.clientdir / "current.json").read_text())["index"] + "/",
                data={":action": "doc_upload", "name": "nodocs"}, files={"content": ("nodocs.doc.zip", b"")},
                auth=("alice", "alicepw"), timeout=30)
    assert r.status_code == 400 and "has no releases" in r.json()["message"]


def test_a_mirror_without_mirror_url_is_created_and_mirror_url_is_stored_as_sent(devpi, devpi_server, upstream):
    """`devpi index -c m type=mirror` as the original allows: an unconfigured mirror that asks
    nobody anything; a mirror_url set later is stored as sent, and then used."""
    upstream.add_wheel("configured-later", "1.0")
    devpi.ok("use", devpi_server.url)
    devpi.ok("login", "root", "--password", "root")
    devpi.ok("index", "-c", "m", "type=mirror")
    cfg = json.loads(devpi.ok("getjson", "/root/m"))["result"]
    assert cfg["type"] == "mirror" and "mirror_url" not in cfg
    r = requests.get(f"{devpi_server.url}/root/m/+simple/configured-later/", timeout=30)
    assert r.status_code == 404 and r.json()["message"]
    asked = lambda: upstream.count(lambda r: "configured-later" in r.path)  # noqa: E731
    assert asked() == 0
    no_slash = upstream.url.rstrip("/")
    devpi.ok("index", "root/m", f"mirror_url={no_slash}")
    assert json.loads(devpi.ok("getjson", "/root/m"))["result"]["mirror_url"] == no_slash
    r = requests.get(f"{devpi_server.url}/root/m/+simple/configured-later/", timeout=30)
    assert r.status_code == 200 and "configured_later-1.0" in r.text
    assert asked() >= 1  # the counter above counts this very page
