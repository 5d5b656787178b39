"""The simple repository API: PEP 503/691/592/629/658/714/700, ETags, determinism, inheritance."""
from __future__ import annotations

import hashlib
import re
import time
import zipfile
from datetime import UTC, datetime

import requests
from srv_helpers import new_stage, raw_upload, sha256_file, unique
from support.dists import write_sdist, write_wheel

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


def get(s, path: str, accept: str | None = None, **kw) -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    headers.update(kw.pop("headers", {}))
    return requests.get(s.url + path, headers=headers, timeout=30, allow_redirects=False, **kw)


def test_formats_hashes_and_pep_fields(engine_server, tmp_path):
    s = engine_server
    auth, index = new_stage(s)
    name = unique("simple-pkg")
    wheel = write_wheel(tmp_path, name, "1.0", requires_python=">=3.8,<4")
    sdist = write_sdist(tmp_path, name, "1.0", requires_python=">=3.8,<4")
    wheel2 = write_wheel(tmp_path, name, "2.0")
    for p in (wheel, sdist, wheel2):
        assert raw_upload(s, index, p.name, p.read_bytes(), (auth[0], "pw"), name=name,
                          version="2.0" if p is wheel2 else "1.0").status_code == 200
    page = f"/{index}/+simple/{name}/"

    # PEP 691 JSON by Accept (pip's header) and by ?format=
    for r in (get(s, page, PIP_ACCEPT), get(s, page, JSON_V1), get(s, page + "?format=" + JSON_V1)):
        assert r.status_code == 200 and r.headers["Content-Type"] == JSON_V1
    doc = get(s, page, JSON_V1).json()
    assert doc["meta"]["api-version"] == "1.1" and doc["name"] == name
    assert doc["versions"] == ["1.0", "2.0"]
    files = {f["filename"]: f for f in doc["files"]}
    assert set(files) == {wheel.name, sdist.name, wheel2.name}
    for p in (wheel, sdist, wheel2):
        f = files[p.name]
        assert f["hashes"] == {"sha256": sha256_file(p)}
        assert f["size"] == p.stat().st_size
        when = datetime.strptime(f["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert abs(when.replace(tzinfo=UTC).timestamp() - time.time()) < 600
        body = requests.get(requests.compat.urljoin(s.url + page, f["url"]), timeout=30).content
        assert hashlib.sha256(body).hexdigest() == f["hashes"]["sha256"]
    assert files[wheel.name]["requires-python"] == ">=3.8,<4"
    assert "requires-python" not in files[wheel2.name]
    # PEP 658/714 core metadata for wheels, not for sdists
    assert "core-metadata" not in files[sdist.name]
    meta_hash = files[wheel.name]["core-metadata"]["sha256"]
    assert files[wheel.name]["dist-info-metadata"] == {"sha256": meta_hash}
    r = requests.get(requests.compat.urljoin(s.url + page, files[wheel.name]["url"]) + ".metadata", timeout=30)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == meta_hash
    with zipfile.ZipFile(wheel) as zf:
        [mdname] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        assert r.content == zf.read(mdname)

    # PEP 503 HTML: default, for text/html, and by ?format=
    for r in (get(s, page), get(s, page, "text/html"), get(s, page + "?format=text/html")):
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    html = get(s, page, "text/html").text
    assert '<meta name="pypi:repository-version" content="1.1">' in html
    anchors = re.findall(r"<a ([^>]*)>([^<]*)</a>", html)
    assert {text for _, text in anchors} == set(files)
    for attrs, text in anchors:
        href = re.search(r'href="([^"]*)"', attrs).group(1)
        assert href.endswith("#sha256=" + files[text]["hashes"]["sha256"])
    wheel_attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', [a for a, t in anchors if t == wheel.name][0]))
    assert wheel_attrs["data-requires-python"] == "&gt;=3.8,&lt;4"
    assert wheel_attrs["data-core-metadata"] == f"sha256={meta_hash}"

    # the project list, both formats
    lst = get(s, f"/{index}/+simple/", JSON_V1)
    assert lst.json() == {"meta": {"api-version": "1.1"}, "projects": [{"name": name}]}
    assert f'<a href="{name}/">{name}</a>' in get(s, f"/{index}/+simple/").text
    assert get(s, f"/{index}/+simple/nothing-here/", JSON_V1).status_code == 404


def test_normalised_name_redirect(engine_server, tmp_path):
    s = engine_server
    auth, index = new_stage(s)
    name = unique("Mixed_Case.Pkg")
    w = write_wheel(tmp_path, name, "1.0")
    assert raw_upload(s, index, w.name, w.read_bytes(), (auth[0], "pw"), name=name,
                      version="1.0").status_code == 200
    norm = re.sub(r"[-_.]+", "-", name).lower()
    r = get(s, f"/{index}/+simple/{name}/", JSON_V1)
    assert r.status_code == 302
    assert r.headers["Location"].endswith(f"/{index}/+simple/{norm}/")
    r = requests.get(s.url + f"/{index}/+simple/{name}/", headers={"Accept": JSON_V1}, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == norm


def test_yank_unyank(engine_server, tmp_path):
    s = engine_server
    auth, index = new_stage(s)
    other = s.create_user(unique("nobody"), "pw")
    name = unique("yank-pkg")
    w = write_wheel(tmp_path, name, "1.0")
    assert raw_upload(s, index, w.name, w.read_bytes(), (auth[0], "pw"), name=name,
                      version="1.0").status_code == 200
    page = f"/{index}/+simple/{name}/"
    assert "yanked" not in get(s, page, JSON_V1).json()["files"][0]
    assert s.api("POST", f"/{index}/{name}/1.0/+yank", json={"reason": "x"}).status_code == 401
    assert s.api("POST", f"/{index}/{name}/1.0/+yank", json={"reason": "x"}, auth=other).status_code == 403
    assert s.api("POST", f"/{index}/{name}/9.9/+yank", json={}, auth=auth).status_code == 404
    r = s.api("POST", f"/{index}/{name}/1.0/+yank", json={"reason": "broken build"}, auth=auth)
    assert r.status_code == 200, r.text
    assert get(s, page, JSON_V1).json()["files"][0]["yanked"] == "broken build"
    assert 'data-yanked="broken build"' in get(s, page).text
    link = s.api("GET", f"/{index}/{name}/1.0").json()["result"]["+links"][0]
    assert link["yanked"] == "broken build"
    # without a reason: yanked is true
    s.api("POST", f"/{index}/{name}/1.0/+yank", auth=auth)
    assert get(s, page, JSON_V1).json()["files"][0]["yanked"] is True
    assert 'data-yanked=""' in get(s, page).text
    r = s.api("POST", f"/{index}/{name}/1.0/+unyank", auth=auth)
    assert r.status_code == 200
    assert "yanked" not in get(s, page, JSON_V1).json()["files"][0]
    assert "data-yanked" not in get(s, page).text


def test_etag_304_and_identical_bytes(module_servers, storage_url, tmp_path):
    s = module_servers(storage=storage_url)
    auth, index = new_stage(s)
    name = unique("etag-pkg")
    for v in ("1.0", "1.1", "2.0"):
        w = write_wheel(tmp_path, name, v, requires_python=">=3")
        assert raw_upload(s, index, w.name, w.read_bytes(), (auth[0], "pw"), name=name,
                          version=v).status_code == 200
    pages = [(f"/{index}/+simple/{name}/", JSON_V1), (f"/{index}/+simple/{name}/", "text/html"),
             (f"/{index}/+simple/", JSON_V1), (f"/{index}/+simple/", "text/html")]
    before = {}
    for path, accept in pages:
        r1, r2 = get(s, path, accept), get(s, path, accept)
        assert r1.content == r2.content and r1.headers["ETag"] == r2.headers["ETag"]
        etag = r1.headers["ETag"]
        r = get(s, path, accept, headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag
        r = get(s, path, accept, headers={"If-None-Match": '"other"'})
        assert r.status_code == 200 and r.content == r1.content
        before[(path, accept)] = (r1.content, etag)
    # a restart (fresh caches, same state) gives the same bytes and ETags
    s.restart()
    for (path, accept), (body, etag) in before.items():
        r = get(s, path, accept)
        assert r.content == body and r.headers["ETag"] == etag, (path, accept)
        assert get(s, path, accept, headers={"If-None-Match": etag}).status_code == 304
    # a write changes the page and its ETag; the old ETag no longer matches
    w = write_wheel(tmp_path, name, "3.0")
    assert raw_upload(s, index, w.name, w.read_bytes(), (auth[0], "pw"), name=name,
                      version="3.0").status_code == 200
    path, accept = pages[0]
    r = get(s, path, accept, headers={"If-None-Match": before[(path, accept)][1]})
    assert r.status_code == 200 and r.headers["ETag"] != before[(path, accept)][1]
    assert r.json()["versions"] == ["1.0", "1.1", "2.0", "3.0"]


def test_inheritance_of_stage_bases_in_order(engine_server, tmp_path):
    s = engine_server
    auth, _ = new_stage(s)
    u = auth[0]
    s.create_index(auth, "a")
    s.create_index(auth, "b")
    s.create_index(auth, "c", bases=f"{u}/a,{u}/b")
    name = unique("inh-pkg")
    only = unique("only-b")
    da, db, dc = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (da, db, dc):
        d.mkdir()

    def put(ix, d, project, version, summary):
        w = write_wheel(d, project, version, summary=summary)
        r = raw_upload(s, f"{u}/{ix}", w.name, w.read_bytes(), (u, "pw"), name=project, version=version)
        assert r.status_code == 200, r.text
        return w

    shared_a = put("a", da, name, "1.0", "in a")   # same file name in a and b: a (first base) wins
    put("b", db, name, "1.0", "in b")
    only_b = put("b", db, name, "0.5", "only in b")
    own = put("c", dc, name, "1.0", "in c")        # ... unless c has it itself
    put("b", db, only, "1.0", "b")
    doc = get(s, f"/{u}/c/+simple/{name}/", JSON_V1).json()
    files = {f["filename"]: f for f in doc["files"]}
    assert set(files) == {own.name, only_b.name}
    assert files[own.name]["hashes"]["sha256"] == sha256_file(own)
    assert files[own.name]["url"].endswith(f"{u}/c/+f/{sha256_file(own)[:3]}/{sha256_file(own)[3:16]}/{own.name}")
    assert f"/{u}/b/+f/" in files[only_b.name]["url"]
    # without c's own copy, a's copy shadows b's
    s.api("DELETE", f"/{u}/c/{name}", auth=auth)
    files = {f["filename"]: f for f in get(s, f"/{u}/c/+simple/{name}/", JSON_V1).json()["files"]}
    assert files[shared_a.name]["hashes"]["sha256"] == sha256_file(shared_a)
    html = get(s, f"/{u}/c/+simple/{name}/").text
    assert f"{u}/a <a " in html and f"{u}/b <a " in html
    # reversed base order: b first
    s.api("PATCH", f"/{u}/c", json=[f"bases={u}/b,{u}/a"], auth=auth)
    files = {f["filename"]: f for f in get(s, f"/{u}/c/+simple/{name}/", JSON_V1).json()["files"]}
    assert files[shared_a.name]["hashes"]["sha256"] != sha256_file(shared_a)
    assert f"/{u}/b/+f/" in files[shared_a.name]["url"]
    # the project list merges the bases; a removed base disappears at once
    names = [p["name"] for p in get(s, f"/{u}/c/+simple/", JSON_V1).json()["projects"]]
    assert names == sorted([name, only])
    s.api("PATCH", f"/{u}/c", json=[f"bases-={u}/b"], auth=auth)
    names = [p["name"] for p in get(s, f"/{u}/c/+simple/", JSON_V1).json()["projects"]]
    assert names == [name]
    assert get(s, f"/{u}/c/+simple/{only}/", JSON_V1).status_code == 404
