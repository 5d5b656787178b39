"""The static view (``--static-dir``) never exposes what the server would not serve anyone.

nginx serves DIR to everyone without asking the server, so: a read-restricted index
(or one with a restricted member in its resolution order) is never written there, and an
index that becomes restricted leaves DIR before the change is answered; names from
requests and uploads cannot write outside DIR; a symlink planted in DIR is never
followed by a write; the server refuses a DIR that holds something it did not make.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from devpi.server.repos.static_view import StaticView, Ticket, UnsafeName
from support.dists import wheel_bytes
from support.ports import free_port

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.01"


def upload(s, index: str, auth, name: str, version: str = "1.0") -> requests.Response:
    filename, data = wheel_bytes(name, version)
    return requests.post(f"{s.url}/{index}/", auth=auth, timeout=60,
                         data={":action": "file_upload", "name": name, "version": version},
                         files={"content": (filename, data)})


def read_all(s, index: str, project: str, auth=None) -> None:
    """Every page and the file, as a reader who may (a miss fills the view where allowed)."""
    for accept in (None, PIP_ACCEPT):
        r = requests.get(f"{s.url}/{index}/+simple/{project}/", headers={"Accept": accept or ""}, auth=auth,
                         timeout=30)
        assert r.status_code == 200, r.text
        requests.get(f"{s.url}/{index}/+simple/", headers={"Accept": accept or ""}, auth=auth, timeout=30)
    page = requests.get(f"{s.url}/{index}/+simple/{project}/", headers={"Accept": PIP_ACCEPT}, auth=auth,
                        timeout=30).json()
    for f in page["files"]:
        url = requests.compat.urljoin(f"{s.url}/{index}/+simple/{project}/", f["url"]).split("#")[0]
        assert requests.get(url, auth=auth, timeout=30).status_code == 200


def everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def static_server(make_server, tmp_path):
    static = tmp_path / "static"
    s = make_server(args=("--static-dir", str(static)))
    s.static = static
    return s


def test_restricted_indexes_are_never_materialised(static_server):
    s = static_server
    alice = s.create_user("alice", "alicepw")
    s.create_index(alice, "secret", acl_read=["alice"])
    s.create_index(alice, "open", bases=["alice/secret"])  # public itself, a private base
    s.create_index(alice, "public")
    for index in ("alice/secret", "alice/open", "alice/public"):
        assert upload(s, index, alice, "sec-" + index.split("/")[1]).status_code == 200
    read_all(s, "alice/secret", "sec-secret", auth=alice)
    read_all(s, "alice/open", "sec-open", auth=alice)
    read_all(s, "alice/open", "sec-secret", auth=alice)  # through the private base
    read_all(s, "alice/public", "sec-public")
    listing = everything_under(s.static)
    assert any(p.startswith("alice/public/+simple/sec-public") for p in listing)
    assert any(p.startswith("alice/public/+f/") for p in listing)
    assert not any(p.startswith(("alice/secret", "alice/open")) for p in listing), listing


def test_an_index_made_private_leaves_the_static_view_before_the_change_returns(static_server):
    s = static_server
    alice = s.create_user("alice", "alicepw")
    s.create_index(alice, "flip")
    s.create_index(alice, "child", bases=["alice/flip"])
    assert upload(s, "alice/flip", alice, "flip-pkg").status_code == 200
    read_all(s, "alice/flip", "flip-pkg")
    read_all(s, "alice/child", "flip-pkg")
    assert (s.static / "alice" / "flip" / "+f").is_dir() and (s.static / "alice" / "child" / "+simple").is_dir()
    r = s.api("PATCH", "/alice/flip", json=["acl_read=alice"], auth=alice)
    assert r.status_code == 200, r.text
    # at once: the index, and every index that inherits from it
    assert not (s.static / "alice" / "flip").exists()
    assert not (s.static / "alice" / "child").exists()
    read_all(s, "alice/flip", "flip-pkg", auth=alice)
    read_all(s, "alice/child", "flip-pkg", auth=alice)
    assert not (s.static / "alice").exists(), everything_under(s.static)
    # a user's deletion takes the user's directory
    r = s.api("PATCH", "/alice/flip", json=["acl_read=:ANONYMOUS:"], auth=alice)
    assert r.status_code == 200, r.text
    read_all(s, "alice/flip", "flip-pkg")
    assert (s.static / "alice" / "flip").is_dir()
    root = s.login("root", "root")
    assert s.api("DELETE", "/alice", auth=root).status_code == 200
    assert not (s.static / "alice").exists()


@pytest.mark.parametrize("project", ["..", "%2e%2e", "..%2F..%2Fescape", "%2F", ".hidden", "a%00b", "x%0Ay",
                                     "%C3%A9t%C3%A9", "a" * 300])
def test_names_in_requests_cannot_write_outside_dir(static_server, tmp_path, project):
    s = static_server
    root = s.login("root", "root")
    s.create_index(root, "dev")
    before = everything_under(tmp_path)
    for accept in (None, PIP_ACCEPT):
        r = requests.get(f"{s.url}/root/dev/+simple/{project}/", headers={"Accept": accept or ""}, timeout=30)
        assert r.status_code < 500, r.text
        r = requests.get(f"{s.url}/root/dev/+f/{project}/{project}", timeout=30)
        assert r.status_code < 500, r.text
    new = [p for p in everything_under(tmp_path) if p not in before and not p.startswith("static/")]
    assert all(p.startswith(("server", "pytest")) or p.endswith(".log") for p in new), new
    for p in s.static.rglob("*"):
        assert p.resolve().is_relative_to(s.static.resolve())


def test_segments_that_could_leave_a_directory_are_refused(tmp_path):
    """The check every name from a request or an upload goes through before a write."""
    view = StaticView(tmp_path / "static")
    view.claim(tmp_path / "srv")
    ticket = Ticket(view.generation, 0)
    for bad in ("..", ".", "", "a/b", "a\\b", "a\0b", ".hidden", "x\ny", "a" * 256):
        with pytest.raises(UnsafeName):
            view.put_page(bad, "dev", "pkg", "html", b"x", ticket)
        if bad:  # "" is the project list
            with pytest.raises(UnsafeName):
                view.put_page("root", "dev", bad, "html", b"x", ticket)
        with pytest.raises(UnsafeName):
            view.put_file("root", "dev", f"+f/ab/cd/{bad}", tmp_path / "blob", ticket)
    with pytest.raises(UnsafeName):
        view.put_file("root", "dev", "../../etc/passwd", tmp_path / "blob", ticket)
    assert everything_under(tmp_path / "static") == [".devpi-static-state", ".devpi-static-state/expiry",
                                                     ".devpi-static-state/lock", ".devpi-static-view"]


def test_symlinks_planted_in_dir_are_not_followed(static_server, tmp_path):
    s = static_server
    root = s.login("root", "root")
    s.create_index(root, "dev")
    s.create_index(root, "other")
    assert upload(s, "root/dev", root, "link-pkg").status_code == 200
    assert upload(s, "root/other", root, "link-pkg2").status_code == 200
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("untouched")
    # a directory of the layout replaced by a link to elsewhere
    (s.static / "root").mkdir(exist_ok=True)
    os.symlink(outside, s.static / "root" / "dev")
    read_all(s, "root/dev", "link-pkg")
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    # a page's own name made a link to a file elsewhere: replaced, the target untouched
    pages = s.static / "root" / "other" / "+simple" / "link-pkg2"
    pages.mkdir(parents=True)
    os.symlink(victim, pages / "index.html")
    os.symlink(victim, pages / "index.json")
    read_all(s, "root/other", "link-pkg2")
    assert victim.read_text() == "untouched"
    assert not (pages / "index.html").is_symlink() and b"link_pkg2" in (pages / "index.html").read_bytes()
    # the +f directory a link elsewhere: nothing lands there
    r = s.api("DELETE", "/root/other/link-pkg2/1.0", auth=root)
    assert r.status_code == 200, r.text
    assert upload(s, "root/other", root, "link-pkg3").status_code == 200
    fdir = s.static / "root" / "other" / "+f"
    if fdir.exists():
        import shutil

        shutil.rmtree(fdir)
    os.symlink(outside, fdir)
    read_all(s, "root/other", "link-pkg3")
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    # and removing what a write changes removes the link, not what it points to
    assert upload(s, "root/other", root, "link-pkg3", "2.0").status_code == 200
    r = s.api("DELETE", "/root/other", auth=root)
    assert r.status_code in (200, 201), r.text
    assert victim.read_text() == "untouched" and not (s.static / "root" / "other").exists()


def _start(serverdir: Path, static: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(serverdir), "--port",
                           str(free_port()), "--static-dir", str(static), "--root-passwd", "x"],
                          capture_output=True, text=True, timeout=60)


def test_a_dir_devpi_did_not_make_is_refused_in_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "precious.txt").write_text("mine")
    p = _start(tmp_path / "srv", home)
    assert p.returncode != 0 and "--static-dir" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert (home / "precious.txt").read_text() == "mine"
    for static in (tmp_path / "srv2", tmp_path / "srv2" / "static", tmp_path):
        p = _start(tmp_path / "srv2", static)
        assert p.returncode != 0 and "--static-dir" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert (home / "precious.txt").read_text() == "mine"


def test_hostile_expiry_buckets_never_delete_outside_dir(tmp_path):
    """The buckets list paths to remove: a path leaving DIR, one through a symlink planted
    in DIR, a bucket that is a symlink, a fifo or a directory, an endless line: nothing
    outside DIR goes, the listed page inside DIR does, and sweeping goes on."""
    static = tmp_path / "static"
    view = StaticView(static)
    view.claim(tmp_path / "srv")
    view.start("uuid", lambda: 1)
    outside = tmp_path / "outside"
    (outside / "+simple" / "p").mkdir(parents=True)
    victims = [outside / "victim", outside / "+simple" / "p" / "index.json", outside / "index.json"]
    for v in victims:
        v.write_text("untouched")
    (static / "root").mkdir()
    os.symlink(outside, static / "root" / "link")  # a directory of the layout replaced by a link
    os.symlink(outside / "+simple", static / "root" / "dev2")
    assert view.put_page("root", "dev", "ok", "json", b"x", Ticket(view.generation, 1))
    expiry = static / ".devpi-static-state" / "expiry"
    (expiry / "5").write_bytes(b"\n".join([
        b"../../outside/victim", str(outside / "victim").encode(), b"root/dev/+simple/../../../outside/index.json",
        b"root/link/+simple/p/index.json", b"root/dev2/+simple/../p/index.json", b"root/link/../+simple/p/index.json",
        b"root/dev/+simple/ok/../../../../outside/victim", b"root/dev/+simple/ok/index.json\0/x",
        b"a" * 100_000, b"root/dev/+simple/ok/index.json", b"..", b"/", b"\xff\xfe",
    ]))
    os.symlink(outside / "victim", expiry / "6")  # a bucket that is a link: not read, not followed
    os.mkfifo(expiry / "7")  # a fifo: never blocks the sweeper
    (expiry / "8").mkdir()  # a directory: left, logged, sweeping goes on
    (expiry / "not-a-second").write_text("root/dev/+simple/ok/index.json\n")
    assert view.sweep(now=10) == 1  # only the one page DIR holds at its place
    for v in victims:
        assert v.read_text() == "untouched"
    assert not (static / "root" / "dev" / "+simple" / "ok" / "index.json").exists()
    assert (static / "root" / "link").is_symlink() and (static / "root" / "dev2").is_symlink()
    assert sorted(p.name for p in expiry.iterdir()) == ["8", "not-a-second"]
    assert view.sweep(now=11) == 0  # and the next sweep does not fail over the directory


def test_a_hostile_bucket_in_a_running_servers_dir_is_swept_harmlessly(static_server, tmp_path):
    s = static_server
    outside = tmp_path / "outside2"
    outside.mkdir()
    (outside / "index.json").write_text("untouched")
    expiry = s.static / ".devpi-static-state" / "expiry"
    import time

    bucket = expiry / str(int(time.time()) + 2)
    bucket.write_text(f"../../outside2/index.json\n{outside}/index.json\nroot/../../outside2/+simple/index.json\n")
    deadline = time.monotonic() + 30
    while bucket.exists():
        assert time.monotonic() < deadline, "the bucket was never swept"
        time.sleep(0.1)
    assert (outside / "index.json").read_text() == "untouched"
    assert requests.get(f"{s.url}/+status", timeout=10).status_code == 200
    assert "Traceback" not in s.log_text()
