"""A big upstream project list (issue 32): read as it arrives, kept compact, served whole.

The server parses the upstream list piece by piece, keeps it compressed, renders list pages
a slice at a time and keeps a big rendered list as gzip only (decompressed as it is sent to
a client without gzip). None of that may change an answer: every list page must hold
exactly the normalised, sorted, unique names, in every format and encoding, wherever the
upstream's pieces happen to be cut. 60,000 names make every list page larger than the size
above which it is kept compact (``simple_page_cache.COMPACT_MIN``, 1 MiB).
"""
from __future__ import annotations

import gzip
import json
import random
import re

import pytest
import requests
from mirror_helpers import make_mirror
from support.dists import write_wheel

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
N = 60_000


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def listing():
    """(raw upstream names in upstream order, the names the server must list)."""
    rnd = random.Random(32)
    raw = [f"Proj_{i:05d}.Lib" if i % 7 == 0 else f"proj-{i:05d}-lib" for i in range(N)]
    raw += ["Zeta..Core", "zeta-core", "ALPHA", "alpha", "not a name!", "x&amp;y"]  # dupes after normalising
    rnd.shuffle(raw)  # not upstream's usual order: the pieces must be merged, not just joined
    want = sorted({normalized(n) for n in raw if re.fullmatch(r"[A-Za-z0-9._-]+", n)})
    return raw, want


def pieces(body: bytes, size: int = 7_777):
    """The body in small pieces (no Content-Length, the connection closes at the end): names
    and markup are cut at arbitrary places."""
    return lambda: (body[i:i + size] for i in range(0, len(body), size))


def json_list(raw: list[str]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in raw]}).encode()


def html_list(raw: list[str], extra: str = "") -> bytes:
    return ("<!DOCTYPE html><html><body>\n" + extra
            + "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in raw) + "</body></html>").encode()


def names_in(resp: requests.Response) -> list[str]:
    assert resp.status_code == 200, resp.text[:300]
    if resp.headers["Content-Type"].startswith(JSON_TYPE):
        return [p["name"] for p in resp.json()["projects"]]
    return re.findall(r'<a href="([^"]*)/">\1</a>', resp.text)


def get_raw(url: str, accept: str, encoding: str) -> tuple[requests.Response, bytes]:
    """The answer and its body exactly as sent (gzip not undone by the client)."""
    r = requests.get(url, headers={"Accept": accept, "Accept-Encoding": encoding}, timeout=120, stream=True)
    body = r.raw.read()
    return r, body


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_a_big_list_is_served_complete_in_every_format_and_encoding(mserver, root, hostile, listing, fmt):
    base, routes, _ = hostile
    raw, want = listing
    body, ctype = (json_list(raw), JSON_TYPE) if fmt == "json" else (html_list(raw), "text/html")
    routes["/simple/"] = (200, {"Content-Type": ctype}, pieces(body))
    url = make_mirror(mserver, root, f"biglist-{fmt}", base + "/simple/")
    for accept in (JSON_TYPE, "text/html"):
        first = requests.get(url, headers={"Accept": accept}, timeout=120)
        assert "X-Devpi-Incomplete" not in first.headers
        assert names_in(first) == want
        plain, plain_body = get_raw(url, accept, "identity")
        zipped, zipped_body = get_raw(url, accept, "gzip")
        assert "Content-Encoding" not in plain.headers and zipped.headers["Content-Encoding"] == "gzip"
        assert int(plain.headers["Content-Length"]) == len(plain_body)
        assert int(zipped.headers["Content-Length"]) == len(zipped_body)
        assert gzip.decompress(zipped_body) == plain_body
        assert len(zipped_body) < len(plain_body) // 3
        for resp, etag in ((plain, plain.headers["ETag"]), (zipped, zipped.headers["ETag"])):
            enc = resp.request.headers["Accept-Encoding"]
            again = requests.get(url, headers={"Accept": accept, "Accept-Encoding": enc, "If-None-Match": etag},
                                 timeout=60)
            assert again.status_code == 304
        head = requests.head(url, headers={"Accept": accept, "Accept-Encoding": "identity"}, timeout=60)
        assert head.status_code == 200 and head.headers["Content-Length"] == plain.headers["Content-Length"]
    status = requests.get(f"{mserver.url}/+status", headers={"Accept": "application/json"}, timeout=30).json()
    held = status["result"]["memory"]["mirrors"][f"root/biglist-{fmt}"]["project_list_bytes"]
    assert 0 < held < len("\n".join(want)) // 2  # kept compressed


def test_an_html_list_that_needs_a_real_parser_is_read_whole(mserver, root, hostile, listing):
    """A comment makes the fast reader step aside: the list is read again and parsed whole."""
    base, routes, asked = hostile
    raw, want = listing
    body = html_list(raw, extra='<!-- <a href="/simple/commented-out/">commented-out</a> -->\n')
    routes["/simple/"] = (200, {"Content-Type": "text/html"}, pieces(body))
    url = make_mirror(mserver, root, "biglist-parser", base + "/simple/")
    assert names_in(requests.get(url, headers={"Accept": JSON_TYPE}, timeout=120)) == want


def test_an_upper_case_html_list_loses_no_name_where_it_is_cut(mserver, root, hostile, listing):
    """HTML is case-insensitive: `<A HREF=...>` anchors are read like `<a href=...>`, and the
    anchor that straddles the reader's cut between two pieces is not dropped."""
    base, routes, _ = hostile
    raw, want = listing
    body = html_list(raw).replace(b"<a href=", b"<A HREF=").replace(b"</a>", b"</A>")
    routes["/simple/"] = (200, {"Content-Type": "text/html"}, pieces(body))
    url = make_mirror(mserver, root, "biglist-upper", base + "/simple/")
    assert names_in(requests.get(url, headers={"Accept": JSON_TYPE}, timeout=120)) == want


def test_a_stage_lists_its_own_projects_merged_into_a_big_mirror_list(mserver, root, hostile, listing, tmp_path):
    base, routes, _ = hostile
    raw, want = listing
    routes["/simple/"] = (200, {"Content-Type": JSON_TYPE}, json_list(raw))
    make_mirror(mserver, root, "biglist-base", base + "/simple/")
    auth = mserver.create_user("bigstage", "pw")
    mserver.create_index(auth, "dev", bases=["root/biglist-base"])
    own = ["proj-00003-lib", "aaa-first", "proj-00003-lia", "zzzz-last"]  # one also upstream's
    for name in own:
        r = mserver.upload("bigstage/dev", write_wheel(tmp_path, name, "1.0"), auth)
        assert r.status_code == 200, r.text
    merged = sorted(set(want) | set(own))
    url = f"{mserver.url}/bigstage/dev/+simple/"
    for accept in (JSON_TYPE, "text/html"):
        assert names_in(requests.get(url, headers={"Accept": accept}, timeout=120)) == merged
        plain = requests.get(url, headers={"Accept": accept, "Accept-Encoding": "identity"}, timeout=120)
        assert names_in(plain) == merged


def test_the_index_json_of_a_big_mirror_lists_every_project(mserver, root, hostile, listing):
    """Streamed a slice at a time, it is still exactly the JSON the API writes everywhere."""
    base, routes, _ = hostile
    raw, want = listing
    routes["/simple/"] = (200, {"Content-Type": JSON_TYPE}, json_list(raw))
    make_mirror(mserver, root, "biglist-index", base + "/simple/")
    r = requests.get(f"{mserver.url}/root/biglist-index", headers={"Accept": "application/json"}, timeout=120)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["type"] == "indexconfig" and doc["result"]["projects"] == want
    assert doc["result"]["type"] == "mirror" and doc["result"]["mirror_url"] == base + "/simple/"
    assert r.content == (json.dumps(doc, indent=2) + "\n").encode()
    short = requests.get(f"{mserver.url}/root/biglist-index?no_projects=", headers={"Accept": "application/json"},
                         timeout=60)
    assert "projects" not in short.json()["result"]
