"""A mirror reads the server's own files only where root pointed it at a local tree.

An upstream page is data from elsewhere: a ``file:`` link or a redirect to a
``file:`` URL in it must not make the server read and serve its local files,
and only root may set a ``file:`` mirror_url.
"""
from __future__ import annotations

import uuid

import requests
from devpi.server.mirror.page import parse_project_page, relpath_for
from mirror_helpers import file_url, filenames, make_mirror, page

SECRET = b"SECRET BYTES OF THE SERVER HOST"


def test_an_upstream_page_cannot_make_the_server_read_its_files(mserver, root, hostile, tmp_path):
    base, routes, _ = hostile
    secret = tmp_path / "secret-1.0.tar.gz"
    secret.write_bytes(SECRET)
    html = (f'<a href="file://{secret}">secret-1.0.tar.gz</a>\n'
            '<a href="/go/secret-2.0.tar.gz">secret-2.0.tar.gz</a>\n'
            '<a href="javascript:alert(1)">secret-3.0.tar.gz</a>\n').encode()
    routes["/simple/secret/"] = (200, {"Content-Type": "text/html"}, html)
    routes["/go/secret-2.0.tar.gz"] = (302, {"Location": f"file://{secret}"}, b"")
    simple = make_mirror(mserver, root, f"hostile{uuid.uuid4().hex[:6]}", f"{base}/simple/")

    r = page(simple, "secret/")
    assert filenames(r) == ["secret-2.0.tar.gz"]  # the file: and javascript: links are left out
    got = requests.get(file_url(simple + "secret/", r, "secret-2.0.tar.gz"), timeout=30)
    assert got.status_code == 502 and SECRET not in got.content
    assert "local file" in got.json()["message"]
    # the path the file: link would have been served under is no file either
    [link] = [x for x in parse_project_page(html, "text/html", f"file://{tmp_path}/simple/secret/")
              if x["filename"] == "secret-1.0.tar.gz"]
    got = requests.get(simple.replace("/+simple/", "/") + relpath_for(link), timeout=30)
    assert got.status_code == 404 and SECRET not in got.content


def test_only_root_points_a_mirror_at_a_local_directory(mserver, root, tmp_path):
    (tmp_path / "simple").mkdir()
    local = f"file://{tmp_path}/simple/"
    user = f"loc{uuid.uuid4().hex[:6]}"
    auth = mserver.create_user(user, "pw")
    r = mserver.api("PUT", f"/{user}/tree", json={"type": "mirror", "mirror_url": local}, auth=auth)
    assert r.status_code == 403 and "only root" in r.json()["message"]
    # only root makes mirrors (doc/mirror.md "Security policy"): root makes this one for the user
    r = mserver.api("PUT", f"/{user}/up", json={"type": "mirror", "mirror_url": "http://127.0.0.1:9/simple/"},
                    auth=root)
    assert r.status_code == 200, r.text
    r = mserver.api("PATCH", f"/{user}/up", json={"mirror_url": local}, auth=auth)
    assert r.status_code == 403 and "only root" in r.json()["message"]
    r = mserver.api("PATCH", f"/{user}/up", json=[f"mirror_url={local}"], auth=auth)
    assert r.status_code == 403
    # root may, and the owner may then change other keys of that index
    assert mserver.api("PATCH", f"/{user}/up", json={"mirror_url": local}, auth=root).status_code == 200
    r = mserver.api("PATCH", f"/{user}/up", json={"title": "local tree"}, auth=auth)
    assert r.status_code == 200, r.text


def test_a_local_tree_serves_only_files_inside_it(mserver, root, tmp_path):
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    (tree / "simple" / "leak").mkdir(parents=True)
    outside.mkdir()
    (outside / "leak-1.0.tar.gz").write_bytes(SECRET)
    (tree / "simple" / "leak" / "index.html").write_text(
        f'<a href="file://{outside}/leak-1.0.tar.gz">leak-1.0.tar.gz</a>\n'
        '<a href="../../../outside/leak-1.0.tar.gz">leak-1.0.tar.gz</a>\n'
        '<a href="../../%2e%2e/outside/leak-1.0.tar.gz">leak-1.0.tar.gz</a>\n')
    simple = make_mirror(mserver, root, f"tree{uuid.uuid4().hex[:6]}", f"file://{tree}/simple/")
    r = page(simple, "leak/")
    assert r.status_code == 200
    for f in r.json()["files"]:
        got = requests.get(requests.compat.urljoin(simple + "leak/", f["url"]), timeout=30)
        assert got.status_code == 502 and SECRET not in got.content, f["url"]
        assert "outside the mirror's local tree" in got.json()["message"]
