"""Index changes reach the views built from them at once, and only those.

A mirror's repository object holds its pages and upstream connections, so it is kept
across changes that do not touch its index (a new user, another index); a change to
the index itself, or deleting it and creating it again, must never serve the old state.
"""
from __future__ import annotations

import requests
from mirror_helpers import filenames, make_mirror, page
from support.upstream import Upstream


def test_a_changed_mirror_url_is_used_at_once(mserver, root, upstream):
    upstream.add_wheel("moving", "1.0")
    with Upstream() as other:
        other.add_wheel("moving", "2.0")
        url = make_mirror(mserver, root, "switching", upstream.url)
        assert filenames(page(url, "moving/")) == ["moving-1.0-py3-none-any.whl"]

        r = mserver.api("PATCH", "/root/switching", json={"mirror_url": other.url}, auth=root)
        assert r.status_code == 200, r.text
        assert filenames(page(url, "moving/")) == ["moving-2.0-py3-none-any.whl"]
        assert other.count(lambda rec: rec.project == "moving") >= 1


def test_a_mirror_deleted_and_created_again_starts_from_its_new_upstream(mserver, root, upstream):
    upstream.add_wheel("reborn", "1.0")
    with Upstream() as other:
        other.add_wheel("reborn", "3.0")
        url = make_mirror(mserver, root, "phoenix", upstream.url)
        assert filenames(page(url, "reborn/")) == ["reborn-1.0-py3-none-any.whl"]
        assert mserver.api("DELETE", "/root/phoenix", auth=root).status_code in (200, 201)
        assert page(url, "reborn/").status_code == 404

        assert make_mirror(mserver, root, "phoenix", other.url) == url
        assert filenames(page(url, "reborn/")) == ["reborn-3.0-py3-none-any.whl"]


def test_unrelated_changes_keep_the_mirror_serving_from_memory(mserver, root, upstream):
    """A new user and a new index elsewhere: the mirror still answers from what it holds,
    without asking upstream again, and a stage created meanwhile sees it as a base."""
    upstream.add_wheel("steady", "1.0")
    url = f"{mserver.url}/root/pypi/+simple/"
    assert filenames(page(url, "steady/")) == ["steady-1.0-py3-none-any.whl"]
    asked = upstream.count(lambda rec: rec.project == "steady")

    bob = mserver.create_user("bob-steady", "pw")
    mserver.create_index(bob, "dev", bases=["root/pypi"])
    assert filenames(page(url, "steady/")) == ["steady-1.0-py3-none-any.whl"]
    assert filenames(page(f"{mserver.url}/bob-steady/dev/+simple/", "steady/")) == ["steady-1.0-py3-none-any.whl"]
    assert upstream.count(lambda rec: rec.project == "steady") == asked
    r = requests.get(f"{mserver.url}/bob-steady/dev/+simple/steady/", timeout=30)
    assert r.status_code == 200
