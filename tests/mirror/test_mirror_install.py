"""pip through a stage that inherits from root/pypi: upstream-only packages, then upstream gone."""
from __future__ import annotations

from mirror_helpers import installed, pip_install
from support.upstream import Upstream


def test_install_through_overlay_survives_upstream_outage_and_restart(make_server, tmp_path):
    up = Upstream().start()
    up.add_wheel("app-one", "1.0", requires_dist=["lib-a>=1", "lib-b"])
    up.add_wheel("lib-a", "1.0")
    up.add_wheel("lib-a", "1.1", requires_dist=["lib-c"])
    up.add_sdist("lib-a", "1.1")
    up.add_wheel("lib-b", "2.0", requires_python=">=3.8")
    up.add_wheel("lib-c", "0.3")
    up.add_wheel("lib-c", "0.4", yanked="broken")
    s = make_server(mirror_url=up.url)
    alice = s.create_user("alice", "pw")
    s.create_index(alice, "dev", bases=["root/pypi"])
    index = f"{s.url}/alice/dev/+simple/"
    expected = {"app-one": "1.0", "lib-a": "1.1", "lib-b": "2.0", "lib-c": "0.3"}

    r = pip_install(index, tmp_path / "t1", "app-one")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed(tmp_path / "t1") == expected  # the yanked lib-c 0.4 is not chosen
    assert up.downloads("app_one-1.0-py3-none-any.whl") == 1

    # Expire every mirrored page, then take upstream away: each page must be answered from
    # the stored copy after the failed revalidation.
    r = s.api("PATCH", "/root/pypi", json=["mirror_cache_expiry=0"], auth=s.login("root", "root"))
    assert r.status_code == 200, r.text
    up.stop()
    r = pip_install(index, tmp_path / "t2", "app-one")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed(tmp_path / "t2") == expected

    s.restart()  # and after a restart during the outage
    r = pip_install(index, tmp_path / "t3", "app-one")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed(tmp_path / "t3") == expected
    log = s.log_text()
    assert "upstream GET" in log  # one log line per upstream fetch
    assert "/simple/app-one/ failed after" in log  # the outage was noticed, not bypassed
    assert "/simple/lib-c/ failed after" not in log  # then not asked again page by page
    r = s.api("GET", "/alice/dev/+simple/lib-c/")
    assert r.status_code == 200 and "X-Devpi-Stale" in r.headers


def test_mirror_cache_survives_restart_on_each_storage(make_server, storage_url):
    """Pages and files are stored in SQL (SQLite and PostgreSQL) and the blob store."""
    up = Upstream().start()
    f = up.add_wheel("kept-pkg", "1.0")
    s = make_server(mirror_url=up.url, storage=storage_url)
    r = s.api("GET", "/root/pypi/+simple/kept-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert r.status_code == 200, r.text
    file_path = "/" + r.json()["files"][0]["url"].lstrip("./")
    assert s.api("GET", file_path).content == f.content
    up.stop()
    s.restart()
    r = s.api("GET", "/root/pypi/+simple/kept-pkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert r.status_code == 200 and [x["filename"] for x in r.json()["files"]] == [f.filename]
    assert s.api("GET", file_path).content == f.content
