"""A mirror of a local PEP 503 tree (file:// URL), including links without a hash (+e/ paths)."""
from __future__ import annotations

import hashlib

import requests
from devpi.server.mirror.page import UpstreamLink, parse_project_page, relpath_for
from mirror_helpers import blob_appears, file_url, filenames, make_mirror, page
from support.upstream import make_wheel


def test_file_url_mirror_with_hashless_links(mserver, root, tmp_path):
    name, wheel, _ = make_wheel("tree-pkg", "1.0")
    sdist = b"not really an sdist, but bytes"
    sha = hashlib.sha256(sdist).hexdigest()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / name).write_bytes(wheel)
    (tmp_path / "files" / "tree-pkg-1.0.tar.gz").write_bytes(sdist)
    (tmp_path / "simple" / "tree-pkg").mkdir(parents=True)
    (tmp_path / "simple" / "index.html").write_text('<a href="tree-pkg/">tree-pkg</a>')
    (tmp_path / "simple" / "tree-pkg" / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../files/{name}">{name}</a>\n'
        f'<a href="../../files/tree-pkg-1.0.tar.gz#sha256={sha}" data-yanked="">tree-pkg-1.0.tar.gz</a>'
        '</body></html>')
    simple = make_mirror(mserver, root, "tree", f"file://{tmp_path}/simple/")
    r = page(simple, "tree-pkg/")
    assert filenames(r) == sorted([name, "tree-pkg-1.0.tar.gz"])
    by_name = {f["filename"]: f for f in r.json()["files"]}
    assert "/root/tree/+e/file__" in by_name[name]["url"] and by_name[name]["hashes"] == {}
    assert by_name["tree-pkg-1.0.tar.gz"]["yanked"] is True
    got = requests.get(file_url(simple + "tree-pkg/", r, name), timeout=30)
    assert got.status_code == 200 and got.content == wheel
    assert blob_appears(mserver, hashlib.sha256(wheel).hexdigest())
    got = requests.get(file_url(simple + "tree-pkg/", r, "tree-pkg-1.0.tar.gz"), timeout=30)
    assert got.status_code == 200 and got.content == sdist
    assert [p["name"] for p in page(simple).json()["projects"]] == ["tree-pkg"]


def test_parse_html_resolves_relative_links_and_reads_attributes():
    body = (b'<html><head><base href="https://mirror.example.invalid/base/"></head><body>'
            b'<a href="f/pkg-1.0.tar.gz#sha256=' + b"a" * 64 + b'" data-requires-python="&gt;=3.8" '
            b'data-core-metadata="sha256=' + b"b" * 64 + b'" data-yanked="bad">pkg-1.0.tar.gz</a>'
            b'<a href="/abs/pkg-2.0-py3-none-any.whl#md5=00">pkg-2.0-py3-none-any.whl</a></body></html>')
    links = parse_project_page(body, "text/html", "https://up.example.invalid/simple/pkg/")
    first, second = links
    assert first["url"] == "https://mirror.example.invalid/base/f/pkg-1.0.tar.gz"
    assert first["sha256"] == "a" * 64 and first["version"] == "1.0"
    assert first["requires_python"] == ">=3.8" and first["yanked"] == "bad"
    assert first["core_metadata_sha256"] == "b" * 64
    assert relpath_for(first) == f"+f/aaa/{'a' * 13}/pkg-1.0.tar.gz"
    assert second["url"] == "https://mirror.example.invalid/abs/pkg-2.0-py3-none-any.whl" and second["sha256"] is None
    assert relpath_for(second) == "+e/https_mirror.example.invalid_abs/pkg-2.0-py3-none-any.whl"


def test_parse_json_page():
    doc = (b'{"meta":{"api-version":"1.1"},"name":"pkg","files":[{"filename":"pkg-1.0.tar.gz",'
           b'"url":"../../files/pkg-1.0.tar.gz","hashes":{"sha256":"' + b"c" * 64 + b'"},"yanked":true,'
           b'"core-metadata":true,"size":12,"upload-time":"2024-01-02T03:04:05.000000Z"}]}')
    (link,) = parse_project_page(doc, "application/vnd.pypi.simple.v1+json", "http://up.example.invalid/simple/pkg/")
    assert link == UpstreamLink(filename="pkg-1.0.tar.gz", url="http://up.example.invalid/files/pkg-1.0.tar.gz",
                                version="1.0", sha256="c" * 64, requires_python=None, yanked="",
                                core_metadata_sha256=None, core_metadata=True, size=12,
                                upload_time=1704164645.0)
