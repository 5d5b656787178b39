"""The overlay of a private stage over root/pypi, and the dependency-confusion guard."""
from __future__ import annotations

import pytest
from mirror_helpers import filenames, installed, page, pip_install
from support.dists import write_wheel


@pytest.fixture(scope="module")
def alice(mserver):
    auth = mserver.create_user("alice", "pw")
    mserver.create_index(auth, "dev", bases=["root/pypi"])
    return auth


def test_private_release_wins_until_whitelisted_and_is_never_asked_upstream(
        mserver, upstream, alice, tmp_path):
    upstream.add_wheel("foo", "99.0")
    upstream.add_wheel("foo-helper", "1.0")
    r = mserver.upload("alice/dev", write_wheel(tmp_path, "foo", "1.0"), alice)
    assert r.status_code == 200, r.text
    index = f"{mserver.url}/alice/dev/+simple/"
    upstream.reset_log()

    r = pip_install(index, tmp_path / "t1", "foo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed(tmp_path / "t1")["foo"] == "1.0"
    assert filenames(page(index, "foo/")) == ["foo-1.0-py3-none-any.whl"]
    # The private name never reached upstream (no page, no file), other names still do.
    assert upstream.count(lambda rec: rec.project == "foo") == 0
    assert filenames(page(index, "foo-helper/")) == ["foo_helper-1.0-py3-none-any.whl"]
    assert upstream.count("/simple/foo-helper/") == 1

    r = mserver.api("PATCH", "/alice/dev", json=["mirror_whitelist+=foo"], auth=alice)
    assert r.status_code == 200, r.text
    r = pip_install(index, tmp_path / "t2", "foo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed(tmp_path / "t2")["foo"] == "99.0"
    assert filenames(page(index, "foo/")) == ["foo-1.0-py3-none-any.whl", "foo-99.0-py3-none-any.whl"]


def test_a_private_upload_hides_the_mirror_at_once_and_its_removal_shows_it_again(
        mserver, upstream, alice, tmp_path):
    """The stage's project names are kept in memory: a page seen before the upload (names
    read without it) must not outlive the upload, nor the names the deletion after it."""
    upstream.add_wheel("late-private", "99.0")
    index = f"{mserver.url}/alice/dev/+simple/"
    assert filenames(page(index, "late-private/")) == ["late_private-99.0-py3-none-any.whl"]

    r = mserver.upload("alice/dev", write_wheel(tmp_path, "late-private", "1.0"), alice)
    assert r.status_code == 200, r.text
    assert filenames(page(index, "late-private/")) == ["late_private-1.0-py3-none-any.whl"]
    upstream.reset_log()
    assert page(index, "late-private/").status_code == 200
    assert upstream.count(lambda rec: rec.project == "late-private") == 0

    r = mserver.api("DELETE", "/alice/dev/late-private", auth=alice)
    assert r.status_code == 200, r.text
    assert filenames(page(index, "late-private/")) == ["late_private-99.0-py3-none-any.whl"]


def test_private_project_served_while_upstream_fails(mserver, upstream, alice, tmp_path):
    r = mserver.upload("alice/dev", write_wheel(tmp_path, "inhouse", "2.0"), alice)
    assert r.status_code == 200, r.text
    upstream.fail_status = 500
    try:
        # whitelisted, so the mirror is asked and fails: the private release is still served
        r = mserver.api("PATCH", "/alice/dev", json=["mirror_whitelist+=inhouse"], auth=alice)
        assert r.status_code == 200, r.text
        r = page(mserver, "/alice/dev/+simple/inhouse/")
        assert filenames(r) == ["inhouse-2.0-py3-none-any.whl"]
        # a project that exists nowhere else: the failure is reported, naming the upstream
        r = page(mserver, "/alice/dev/+simple/never-cached-anywhere/")
        assert r.status_code == 502
        assert upstream.url in r.json()["message"]
    finally:
        upstream.fail_status = None


def test_mirror_itself_gives_502_naming_upstream_when_nothing_cached(mserver, upstream):
    upstream.add_wheel("down-proj", "1.0")
    upstream.fail["down-proj"] = 503
    try:
        r = page(mserver, "/root/pypi/+simple/down-proj/")
        assert r.status_code == 502
        assert r.headers["Content-Type"] == "application/json"
        assert f"{upstream.url}down-proj/" in r.json()["message"]
    finally:
        del upstream.fail["down-proj"]
    # once upstream is back (and its failure not remembered for a new project) it works
    r = page(mserver, "/root/pypi/+simple/down-proj/")
    assert filenames(r) == ["down_proj-1.0-py3-none-any.whl"]


def test_unknown_project_is_404_and_pages_link_to_this_server(mserver, upstream):
    r = page(mserver, "/root/pypi/+simple/no-such-project-anywhere/")
    assert r.status_code == 404
    upstream.add_wheel("linked", "1.0")
    r = page(mserver, "/root/pypi/+simple/linked/")
    assert str(upstream.port) not in r.text
    r = mserver.api("GET", "/root/pypi/+simple/linked/", headers={"Accept": "text/html"})
    assert r.status_code == 200 and str(upstream.port) not in r.text
    assert "/root/pypi/+f/" in r.text


def test_credentials_in_mirror_url_never_shown(mserver, root, upstream):
    from mirror_helpers import make_mirror

    url = upstream.url.replace("http://", "http://someone:s3cret@")
    simple = make_mirror(mserver, root, "withcreds", url)
    upstream.add_wheel("cred-pkg", "1.0")
    assert filenames(page(simple, "cred-pkg/")) == ["cred_pkg-1.0-py3-none-any.whl"]
    assert upstream.requests[-1].header("Authorization", "").startswith("Basic ")  # sent upstream only
    upstream.fail["cred-missing"] = 500
    try:
        r = page(simple, "cred-missing/")
    finally:
        del upstream.fail["cred-missing"]
    assert r.status_code == 502 and "s3cret" not in r.text and "127.0.0.1" in r.json()["message"]
    assert "s3cret" not in mserver.log_text()


def test_upstream_reached_through_the_proxy_the_environment_names(tmp_path, upstream):
    """http_proxy is honoured for upstream requests (and no_proxy for loopback, which every
    other test relies on). The local upstream doubles as the forward proxy here: it answers
    absolute-form requests for a host name that resolves nowhere."""
    import requests
    from support.server import ServerProcess

    f = upstream.add_wheel("proxied-pkg", "1.0")
    far = "http://upstream-behind-proxy.example.invalid/simple/"
    s = ServerProcess(tmp_path / "proxied", mirror_url=far, env={"http_proxy": upstream.base}).start()
    try:
        url = f"{s.url}/root/pypi/+simple/proxied-pkg/"
        assert filenames(page(url)) == [f.filename]
        hosts = {rec.header("Host") for rec in upstream.requests if "proxied" in rec.path}
        assert hosts == {"upstream-behind-proxy.example.invalid"}
        r = requests.get(url, timeout=30)
        href = r.text.split('href="', 1)[1].split('"', 1)[0]
        assert requests.get(requests.compat.urljoin(url, href), timeout=30).content == f.content
        assert upstream.downloads(f.filename) == 1
    finally:
        s.stop()
