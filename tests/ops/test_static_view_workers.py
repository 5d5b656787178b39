"""The static view kept by ``--workers 2`` (SQLite and PostgreSQL), nginx in front.

Every worker renders pages and files into the one DIR and removes what a commit changed,
its own commits before they are answered and the other's when its changelog poller
brings them (repos/static_view.py). Sessions pinned to one worker (support/workers.py)
choose who renders and who writes. The deterministic race (a worker behind a commit
cannot land what it read before) is tests/server/repos/test_static_view_shared.py.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from support.dists import wheel_bytes
from support.nginx import gen_config, need_nginx, nginx_conf, running_nginx
from support.ports import free_port
from support.waiting import wait_until
from support.workers import pinned_sessions, worker_pids

JSON = "application/vnd.pypi.simple.v1+json"




class Site:
    def __init__(self, server, url: str, static: Path):
        self.s, self.url, self.static = server, url, static
        self.auth = server.login("root", "root")

    def page_path(self, project: str, fmt: str = "json") -> Path:
        return self.static / "root" / "dev" / "+simple" / (f"{project}/" if project else "") / f"index.{fmt}"

    def upload(self, session: requests.Session, version: str) -> None:
        filename, data = wheel_bytes("wpkg", version)
        r = session.post(f"{self.s.url}/root/dev/", auth=self.auth, timeout=60,
                         data={":action": "file_upload", "name": "wpkg", "version": version},
                         files={"content": (filename, data)})
        assert r.status_code == 200, r.text


@pytest.fixture
def site(make_server, storage_url, tmp_path):
    need_nginx()
    static = tmp_path / "static"
    s = make_server(storage=storage_url, args=("--workers", "2", "--static-dir", str(static)))
    nport = free_port()
    url = f"http://127.0.0.1:{nport}"
    out = tmp_path / "conf"
    p = gen_config("--serverdir", str(s.serverdir), "--port", str(s.port), "--outside-url", url,
                   "--static-dir", str(static), "--output", str(out), "--nginx-logdir", str(tmp_path / "nlog"))
    assert p.returncode == 0, p.stderr
    (tmp_path / "nlog").mkdir()
    (tmp_path / "nginx").mkdir()
    with running_nginx(nginx_conf(tmp_path / "nginx", out / "nginx-devpi.conf"), nport):
        site = Site(s, url, static)
        r = requests.put(f"{url}/root/dev", json={"type": "stage", "bases": []}, auth=site.auth,
                         headers={"Accept": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        yield site


def _versions(page: Path) -> set[str] | None:
    """The versions a JSON page in DIR lists (None: not there)."""
    try:
        files = json.loads(page.read_bytes())["files"]
    except FileNotFoundError:
        return None
    return {f["filename"].split("-")[1] for f in files}


def _fill(site: Site, session: requests.Session, versions: set[str]) -> str:
    """Ask ``session``'s worker for the page, the list and the newest file until all are in DIR (a
    render that worker started before its poller brought the last upload is not kept);
    the file's path under DIR."""
    newest = max(versions)

    def filled():
        r = session.get(f"{site.s.url}/root/dev/+simple/wpkg/", headers={"Accept": JSON}, timeout=30)
        assert r.status_code in (200, 404), r.text
        session.get(f"{site.s.url}/root/dev/+simple/", headers={"Accept": JSON}, timeout=30)
        if r.status_code != 200 or _versions(site.page_path("wpkg")) != versions or not site.page_path("").is_file():
            return None
        (url,) = [urljoin(r.url, f["url"]).split("#")[0] for f in r.json()["files"] if f"-{newest}-" in f["filename"]]
        assert session.get(url, timeout=30).status_code == 200
        relpath = url[len(f"{site.s.url}/"):]
        return relpath if (site.static / relpath).is_file() else None

    return wait_until(filled)


def test_a_write_through_one_worker_leaves_nothing_stale_whichever_worker_rendered(site):
    a, b = pinned_sessions(site.s.url)
    site.upload(a, "1.0")
    versions = {"1.0"}
    for n, (renderer, writer) in enumerate([(a, b), (b, a), (a, a), (b, b)], start=1):
        relpath = _fill(site, renderer, versions)
        assert site.page_path("").is_file()
        version = f"1.{n}"
        site.upload(writer, version)  # returns: the project's pages and the lists are gone
        assert _versions(site.page_path("wpkg")) is None
        assert not site.page_path("wpkg", "html").exists() and not site.page_path("").exists()
        versions.add(version)
        _fill(site, renderer, versions)  # the renderer takes the upload in and fills DIR anew
        # delete the file the renderer put in DIR through the writer: gone when it returns
        old = max(versions - {version})
        r = writer.delete(f"{site.s.url}/root/dev/wpkg/{old}", auth=site.auth,
                          headers={"Accept": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        assert not (site.static / relpath).exists() and _versions(site.page_path("wpkg")) is None
        versions.discard(old)
    # nginx ends up answering the last state from DIR, nothing older ever seen there
    def from_nginx():
        r = requests.get(f"{site.url}/root/dev/+simple/wpkg/", headers={"Accept": JSON}, timeout=30)
        listed = {f["filename"].split("-")[1] for f in r.json()["files"]}
        in_dir = _versions(site.page_path("wpkg"))
        assert in_dir in (None, versions), (in_dir, versions)
        return listed == versions and "X-Devpi-Serial" not in r.headers

    wait_until(from_nginx)
    assert "Traceback" not in site.s.log_text(), site.s.log_text()


def test_a_restarting_worker_does_not_empty_dir(site):
    a, _ = pinned_sessions(site.s.url)
    site.upload(a, "1.0")
    relpath = _fill(site, a, {"1.0"})
    page_inode = site.page_path("wpkg").stat().st_ino
    before = worker_pids(site.s.url)
    os.kill(before[1], signal.SIGKILL)

    def replaced():
        try:
            pids = worker_pids(site.s.url)
        except AssertionError:
            return None
        return pids if pids[1] != before[1] else None

    wait_until(replaced)
    assert site.page_path("wpkg").stat().st_ino == page_inode and (site.static / relpath).is_file()
    r = requests.get(f"{site.url}/root/dev/+simple/wpkg/", headers={"Accept": JSON}, timeout=30)
    assert r.status_code == 200 and "X-Devpi-Serial" not in r.headers  # nginx's, from DIR
    # the whole server stopped and started again: every commit was removed, DIR is kept
    site.s.restart()
    worker_pids(site.s.url)  # both workers up (each opened DIR at its start)
    assert site.page_path("wpkg").stat().st_ino == page_inode and (site.static / relpath).is_file()


def test_a_state_behind_the_database_empties_dir_at_start(site):
    """A commit whose removal a crash cut off (the state records the serial before it)."""
    a, _ = pinned_sessions(site.s.url)
    site.upload(a, "1.0")
    relpath = _fill(site, a, {"1.0"})
    a.close()
    site.s.stop()
    state_file = site.static / ".devpi-static-state" / "state"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "serial": state["serial"] - 1}))
    site.s.start()
    worker_pids(site.s.url)  # both workers up (each opened DIR at its start)
    assert not site.page_path("wpkg").exists() and not (site.static / relpath).exists()
    assert json.loads(state_file.read_text())["serial"] == state["serial"]
    r = requests.get(f"{site.url}/root/dev/+simple/wpkg/", headers={"Accept": JSON}, timeout=30)
    assert r.status_code == 200 and "X-Devpi-Serial" in r.headers  # the server's: DIR was emptied
