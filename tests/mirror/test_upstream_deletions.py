"""A project the upstream deletes keeps what this mirror cached (an upstream deletion must
not break builds: one of the main reasons to run a private index), marked as such; an
upstream page that is 200 with nothing in it is an empty project, as the original reads it."""
from __future__ import annotations

import time

import requests
from support.hostile import HostileUpstream
from support.pipinstall import installed, pip_install
from support.replication import wait_until

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def _expire_quickly(server) -> None:
    root = server.login("root", "root")
    r = server.api("PATCH", "/root/pypi", json=["mirror_cache_expiry=1"], auth=root)
    assert r.status_code == 200, r.text


def _filenames(server, project: str) -> list[str]:
    r = requests.get(f"{server.url}/root/pypi/+simple/{project}/", headers=SIMPLE_JSON, timeout=30)
    return [f["filename"] for f in r.json()["files"]] if r.status_code == 200 else []


def test_a_project_deleted_upstream_keeps_its_cached_files(make_server, upstream, tmp_path):
    upstream.add_wheel("vanish-lib", "1.0")
    upstream.add_wheel("vanish-lib", "2.0")
    upstream.add_wheel("never-fetched", "1.0")
    server = make_server(mirror_url=upstream.url)
    _expire_quickly(server)
    index = f"{server.url}/root/pypi/+simple/"
    assert pip_install(index, tmp_path / "t1", "vanish-lib==1.0").returncode == 0
    assert sorted(_filenames(server, "never-fetched")) == ["never_fetched-1.0-py3-none-any.whl"]
    upstream.remove_project("vanish-lib")
    upstream.remove_project("never-fetched")
    time.sleep(1.5)  # past the page's expiry (1 s): the next request asks upstream again
    wait_until(lambda: _filenames(server, "vanish-lib") == ["vanish_lib-1.0-py3-none-any.whl"],
               what="the page shrinking to the cached file")
    result = pip_install(index, tmp_path / "t2", "vanish-lib")
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(tmp_path / "t2") == {"vanish-lib": "1.0"}
    assert requests.get(f"{index}never-fetched/", timeout=30).status_code == 404  # nothing cached: gone
    web = requests.get(f"{server.url}/root/pypi/vanish-lib", headers={"Accept": "text/html"}, timeout=30).text
    assert "upstream no longer has vanish-lib" in web
    assert "serving the 1 file(s) cached here" in server.log_text()
    # the upstream publishes it again: the mirror follows
    upstream.add_wheel("vanish-lib", "3.0")
    time.sleep(1.5)
    wait_until(lambda: "vanish_lib-3.0-py3-none-any.whl" in _filenames(server, "vanish-lib"),
               what="the project coming back")


def test_an_empty_200_page_is_an_empty_project(make_server):
    with HostileUpstream() as hostile:
        hostile.routes["/simple/empty-lib/"] = (200, {}, b"")
        server = make_server(mirror_url=hostile.url + "/simple/")
        r = requests.get(f"{server.url}/root/pypi/+simple/empty-lib/", headers=SIMPLE_JSON, timeout=30)
        assert r.status_code == 200 and r.json()["files"] == []


def test_an_upstream_404_for_a_file_is_said_in_the_originals_words(make_server):
    with HostileUpstream() as hostile:
        sha = "a" * 64
        page = (f'<a href="../../files/lost-1.0-py3-none-any.whl#sha256={sha}">lost-1.0-py3-none-any.whl</a>')
        hostile.routes["/simple/lost/"] = (200, {"Content-Type": "text/html"}, page.encode())
        server = make_server(mirror_url=hostile.url + "/simple/")
        r = requests.get(f"{server.url}/root/pypi/+simple/lost/", headers=SIMPLE_JSON, timeout=30)
        assert r.status_code == 200, r.text
        href = r.json()["files"][0]["url"]
        r = requests.get(requests.compat.urljoin(f"{server.url}/root/pypi/+simple/lost/", href), timeout=30)
        assert r.status_code == 404 and r.json()["message"].startswith("error 404 getting ")
