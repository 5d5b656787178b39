"""Revalidation, stale copies, refresh, serials, slow upstreams, offline mode, the project list."""
from __future__ import annotations

import time

import pytest
import requests
from mirror_helpers import file_url, filenames, make_mirror, page
from support.server import ServerProcess
from support.upstream import Upstream


@pytest.fixture(scope="module")
def mserver(tmp_path_factory, upstream):
    """request timeout 1 s, so a hanging upstream is replaced by the stored copy quickly."""
    s = ServerProcess(tmp_path_factory.mktemp("mirror") / "server", mirror_url=upstream.url,
                      args=("--request-timeout", "1")).start()
    yield s
    s.stop()
    # the mirror's cache writes are committed in the background: a failing one only logs
    assert "mirror: could not store" not in s.log_text()


@pytest.fixture(scope="module")
def expiring(mserver, root, upstream):
    """A mirror of the same upstream whose pages expire at once: every request revalidates."""
    return make_mirror(mserver, root, "expiring", upstream.url, mirror_cache_expiry=0)


def _page_requests(upstream, project):
    return [r for r in upstream.requests if r.path == f"/simple/{project}/"]


def test_revalidation_is_conditional(expiring, upstream):
    upstream.add_wheel("reval", "1.0")
    assert filenames(page(expiring, "reval/")) == ["reval-1.0-py3-none-any.whl"]
    assert filenames(page(expiring, "reval/")) == ["reval-1.0-py3-none-any.whl"]
    first, second = _page_requests(upstream, "reval")[-2:]
    assert "application/vnd.pypi.simple.v1+json" in first.header("Accept")
    assert second.header("If-None-Match") and second.status == 304
    upstream.add_wheel("reval", "2.0")
    assert filenames(page(expiring, "reval/")) == ["reval-1.0-py3-none-any.whl", "reval-2.0-py3-none-any.whl"]


def test_upstream_failure_serves_last_good_copy_marked_stale(expiring, upstream):
    upstream.add_wheel("flaky", "1.0")
    r = page(expiring, "flaky/")
    assert r.status_code == 200 and "X-Devpi-Stale" not in r.headers
    for switch in ("status", "garbage"):
        if switch == "status":
            upstream.fail["flaky"] = 500
        else:
            upstream.garbage.add("flaky")
        try:
            r = page(expiring, "flaky/")
            assert filenames(r) == ["flaky-1.0-py3-none-any.whl"]
            assert r.headers["X-Devpi-Stale"]
            assert "no-cache" in r.headers["Cache-Control"]
        finally:
            upstream.fail.pop("flaky", None)
            upstream.garbage.discard("flaky")
        requests.post(expiring + "flaky/refresh", timeout=30)  # forget the failure backoff


def test_refresh_forces_revalidation(mserver, upstream):
    upstream.add_wheel("refreshme", "1.0")
    simple = f"{mserver.url}/root/pypi/+simple/"
    assert filenames(page(simple, "refreshme/")) == ["refreshme-1.0-py3-none-any.whl"]
    upstream.add_wheel("refreshme", "1.1")
    assert filenames(page(simple, "refreshme/")) == ["refreshme-1.0-py3-none-any.whl"]  # not expired
    r = requests.post(simple + "refreshme/refresh", allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert filenames(page(simple, "refreshme/")) == ["refreshme-1.0-py3-none-any.whl",
                                                     "refreshme-1.1-py3-none-any.whl"]
    assert _page_requests(upstream, "refreshme")[-1].header("If-None-Match")


def test_older_upstream_serial_is_ignored(expiring, upstream):
    upstream.add_wheel("serialized", "1.0")
    r = page(expiring, "serialized/")
    stored_serial = int(r.headers["X-PyPI-Last-Serial"])
    upstream.add_wheel("serialized", "2.0")
    upstream.serial = stored_serial - 1  # a lagging upstream replica answers with an older view
    r = page(expiring, "serialized/")
    assert filenames(r) == ["serialized-1.0-py3-none-any.whl"]
    assert r.headers["X-PyPI-Last-Serial"] == str(stored_serial)
    assert _page_requests(upstream, "serialized")[-1].status == 200  # it was asked, and answered
    upstream.serial = stored_serial + 5
    requests.post(expiring + "serialized/refresh", timeout=30)
    assert filenames(page(expiring, "serialized/")) == ["serialized-1.0-py3-none-any.whl",
                                                        "serialized-2.0-py3-none-any.whl"]


def test_hanging_upstream_answered_from_stored_copy_then_refreshed_in_background(expiring, upstream):
    upstream.add_wheel("sleepy", "1.0")
    assert filenames(page(expiring, "sleepy/")) == ["sleepy-1.0-py3-none-any.whl"]
    upstream.add_wheel("sleepy", "2.0")
    upstream.hang_targets.add("sleepy")
    try:
        # The server's upstream read timeout is 30 s; the client gives up after 15 s, so a 200
        # here means the stored copy was answered without waiting for upstream.
        r = requests.get(expiring + "sleepy/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                         timeout=15)
        assert filenames(r) == ["sleepy-1.0-py3-none-any.whl"]
        assert "X-Devpi-Stale" not in r.headers  # upstream is slow, not failing
    finally:
        upstream.hang_targets.discard("sleepy")
    # the fetch that was left running lands the new page
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(filenames(page(expiring, "sleepy/"))) == 2:
            break
        time.sleep(0.1)
    assert filenames(page(expiring, "sleepy/")) == ["sleepy-1.0-py3-none-any.whl", "sleepy-2.0-py3-none-any.whl"]



def test_once_upstream_hangs_other_expired_pages_answer_at_once_without_asking(expiring, upstream):
    """One request waits the request timeout and learns that upstream hangs; the requests
    after it answer from their stored copies without asking upstream, instead of each
    waiting in turn (a pip run over many expired pages behind a dead network). Once
    upstream answers again, expired pages are revalidated as before."""
    names = [f"outage{k}" for k in range(4)]
    for name in names:
        upstream.add_wheel(name, "1.0")
        assert filenames(page(expiring, f"{name}/")) == [f"{name}-1.0-py3-none-any.whl"]
    asked = len(upstream.requests)
    upstream.hang = True
    try:
        for name in names:
            r = page(expiring, f"{name}/")
            assert filenames(r) == [f"{name}-1.0-py3-none-any.whl"]
            assert "X-Devpi-Stale" not in r.headers  # upstream is slow, not failing
        assert [rec.path for rec in upstream.requests[asked:]] == [f"/simple/{names[0]}/"]
    finally:
        upstream.hang = False
    upstream.add_wheel(names[1], "2.0")
    deadline = time.monotonic() + 30  # the first request's fetch lands; then pages are asked for again
    while len(filenames(page(expiring, f"{names[1]}/"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert filenames(page(expiring, f"{names[1]}/")) == [f"{names[1]}-1.0-py3-none-any.whl",
                                                         f"{names[1]}-2.0-py3-none-any.whl"]


def test_project_list_comes_from_upstream(mserver, upstream):
    upstream.add_wheel("Listed_Project", "1.0")
    r = page(mserver, "/root/pypi/+simple/")
    assert r.status_code == 200
    assert "listed-project" in [p["name"] for p in r.json()["projects"]]


def test_offline_mode_serves_only_what_is_cached_and_never_asks_upstream(make_server):
    up = Upstream().start()
    up.add_wheel("cached-pkg", "1.0")
    up.add_wheel("cached-pkg", "2.0")
    up.add_wheel("other-pkg", "1.0")
    s = make_server(mirror_url=up.url)
    simple = f"{s.url}/root/pypi/+simple/"
    r = page(simple, "cached-pkg/")
    fetched = file_url(simple + "cached-pkg/", r, "cached_pkg-1.0-py3-none-any.whl")
    unfetched = file_url(simple + "cached-pkg/", r, "cached_pkg-2.0-py3-none-any.whl")
    assert requests.get(fetched, timeout=30).status_code == 200
    s.args = ("--offline",)
    s.restart()
    up.reset_log()
    r = page(simple, "cached-pkg/")
    assert filenames(r) == ["cached_pkg-1.0-py3-none-any.whl"]  # only what is cached
    assert requests.get(fetched, timeout=30).status_code == 200
    assert requests.get(unfetched, timeout=30).status_code == 404
    assert page(simple, "other-pkg/").status_code == 404
    assert [p["name"] for p in page(simple).json()["projects"]] == ["cached-pkg"]
    assert up.requests == []
    up.stop()
