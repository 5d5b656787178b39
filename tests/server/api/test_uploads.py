"""Uploads through the legacy API with the real twine CLI, and the rules a stage enforces."""
from __future__ import annotations

import hashlib
import io
import os
import zipfile

import pytest
import requests
from srv_helpers import new_stage, raw_upload, serial, sha256_file, simple_json, twine_upload, unique
from support.dists import sdist_bytes, wheel_bytes, write_sdist, write_wheel


def test_twine_uploads_sdist_and_wheel(engine_server, tmp_path):
    s = engine_server
    auth, index = new_stage(s, "twinepw")
    name = unique("tw-pkg")
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = write_wheel(dist, name, "1.0", summary="from the wheel", requires_python=">=3.8",
                        requires_dist=["other-thing>=2"])
    sdist = write_sdist(dist, name, "1.0", summary="from the wheel", requires_python=">=3.8",
                        requires_dist=["other-thing>=2"])
    p = twine_upload(s, index, auth[0], "twinepw", sorted(dist.iterdir()))
    assert p.returncode == 0, p.stdout + p.stderr
    page = simple_json(s, index, name)
    assert {f["filename"]: f["hashes"]["sha256"] for f in page["files"]} == {
        wheel.name: sha256_file(wheel), sdist.name: sha256_file(sdist)}
    ver = s.api("GET", f"/{index}/{name}/1.0").json()
    assert ver["type"] == "versiondata"
    md = ver["result"]
    assert md["summary"] == "from the wheel" and md["requires_python"] == ">=3.8"
    assert md["requires_dist"] == ["other-thing>=2"]
    assert md["version"] == "1.0"
    for link in md["+links"]:
        body = requests.get(link["href"], timeout=30).content
        assert hashlib.sha256(body).hexdigest() == link["hashes"]["sha256"]
    assert s.api("GET", f"/{index}").json()["result"]["projects"] == [name]
    # a wrong password: twine fails, nothing stored
    other = write_wheel(dist, name, "2.0")
    p = twine_upload(s, index, auth[0], "wrong", [other])
    assert p.returncode != 0 and "401" in p.stdout + p.stderr
    assert [v for v in s.api("GET", f"/{index}/{name}").json()["result"]] == ["1.0"]


def test_metadata_comes_from_the_file(engine_server):
    s = engine_server
    auth, index = new_stage(s)
    name = unique("md-pkg")
    fn, data = wheel_bytes(name, "1.0", summary="file says", requires_dist=["dep-a"],
                           requires_python=">=3.9")
    r = raw_upload(s, index, fn, data, (auth[0], "pw"), name=name, version="1.0", summary="form says",
                   requires_python=">=2.7")
    assert r.status_code == 200, r.text
    md = s.api("GET", f"/{index}/{name}/1.0").json()["result"]
    assert md["summary"] == "file says" and md["requires_python"] == ">=3.9"
    assert md["requires_dist"] == ["dep-a"]
    # every known key is present, missing ones as "" or []
    assert md["author"] == "" and md["classifiers"] == []
    # the file's metadata names another project
    fn2, data2 = wheel_bytes("something-else", "1.0")
    r = raw_upload(s, index, f"{name.replace('-', '_')}-1.1-py3-none-any.whl", data2, (auth[0], "pw"),
                   name=name, version="1.1")
    assert r.status_code == 400 and "metadata names project" in r.json()["message"]


def test_a_long_description_sent_as_a_form_field_is_kept(engine_server):
    """bottle hands a multipart field over 100 KiB over as a file: it must still count."""
    s = engine_server
    auth, index = new_stage(s)
    name = unique("long-pkg")
    description = "A long description. " * 100_000  # 2 MB
    form = {":action": "submit", "name": name, "version": "1.0", "description": description,
            "summary": "short"}
    r = requests.post(f"{s.url}/{index}/", files={k: (None, v) for k, v in form.items()}, auth=(auth[0], "pw"),
                      timeout=60)
    assert r.status_code == 200, r.text
    md = s.api("GET", f"/{index}/{name}/1.0").json()["result"]
    assert md["summary"] == "short" and md["description"] == description

def test_name_version_digest_checks(engine_server):
    s = engine_server
    auth, index = new_stage(s)
    name = unique("chk-pkg")
    fn, data = sdist_bytes(name, "1.0")
    creds = (auth[0], "pw")
    before = serial(s)
    cases = [
        (dict(name="other-name", version="1.0"), "does not belong to project"),
        (dict(name=name, version="1.1"), "does not contain version"),
        (dict(name=name, version="1.0", sha256_digest="0" * 64), "sha256_digest mismatch"),
        (dict(name=name, version="1.0", md5_digest="0" * 32), "md5_digest mismatch"),
        (dict(name=name, version="not-pep440!"), "not a PEP 440 version"),
    ]
    for fields, message in cases:
        r = raw_upload(s, index, fn, data, creds, **fields)
        assert r.status_code == 400, (fields, r.text)
        assert message in r.json()["message"]
        assert message.split()[0] in r.reason  # the message is in the reason phrase too
    assert serial(s) == before
    assert s.api("GET", f"/{index}").json()["result"]["projects"] == []
    r = raw_upload(s, index, fn, data, creds, name=name, version="1.0",
                   sha256_digest=hashlib.sha256(data).hexdigest(), md5_digest=hashlib.md5(data).hexdigest())
    assert r.status_code == 200, r.text
    # the file name may carry the normalised spelling of the version the metadata gives
    fn3, data3 = sdist_bytes(name, "2.0-rc1")
    r = raw_upload(s, index, fn3.replace("2.0-rc1", "2.0rc1"), data3, creds, name=name, version="2.0-rc1")
    assert r.status_code == 200, r.text
    assert sorted(s.api("GET", f"/{index}/{name}").json()["result"]) == ["1.0", "2.0-rc1"]


def test_non_volatile_refuses_overwrite_and_delete(engine_server, tmp_path):
    s = engine_server
    auth, index = new_stage(s, "pw", volatile=False)
    name = unique("nv-pkg")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = write_wheel(a, name, "1.0", summary="first")
    changed = write_wheel(b, name, "1.0", summary="changed bytes")
    assert first.name == changed.name and first.read_bytes() != changed.read_bytes()
    assert twine_upload(s, index, auth[0], "pw", [first]).returncode == 0
    at = serial(s)
    # identical bytes again: harmless, no new serial
    p = twine_upload(s, index, auth[0], "pw", [first])
    assert p.returncode == 0, p.stdout + p.stderr
    r = raw_upload(s, index, first.name, first.read_bytes(), (auth[0], "pw"), name=name, version="1.0")
    assert r.status_code == 200 and "identical" in r.reason
    assert serial(s) == at and int(r.headers["X-Devpi-Serial"]) == at
    # other bytes under the same name: 409, and twine reports the failure
    r = raw_upload(s, index, changed.name, changed.read_bytes(), (auth[0], "pw"), name=name, version="1.0")
    assert r.status_code == 409 and "already exists in non-volatile index" in r.json()["message"]
    p = twine_upload(s, index, auth[0], "pw", [changed])
    assert p.returncode != 0 and "409" in p.stdout + p.stderr
    assert serial(s) == at
    [f] = simple_json(s, index, name)["files"]
    assert f["hashes"]["sha256"] == sha256_file(first)
    # deletes are refused without force
    href = s.api("GET", f"/{index}/{name}/1.0").json()["result"]["+links"][0]["href"]
    path = href.split(s.url, 1)[1]
    for target in (path, f"/{index}/{name}/1.0", f"/{index}/{name}"):
        r = s.api("DELETE", target, auth=auth)
        assert r.status_code == 403 and "non-volatile" in r.json()["message"], target
    assert serial(s) == at
    assert requests.get(href, timeout=30).content == first.read_bytes()


def test_one_version_in_any_spelling_is_one_release(engine_server, tmp_path):
    """PEP 440 says 4.0, 4.0.0 and 4 are one version: a file sent as any of them joins the
    release that exists, so a non-volatile index cannot get two files of one name."""
    s = engine_server
    auth, index = new_stage(s, "pw", volatile=False)
    creds = (auth[0], "pw")
    name = unique("canon-pkg")
    wfn, first = wheel_bytes(name, "4.0")
    other = wheel_bytes(name, "4.0.0", summary="other bytes")[1]
    assert raw_upload(s, index, wfn, first, creds, name=name, version="4.0").status_code == 200
    at = serial(s)
    r = raw_upload(s, index, wfn, other, creds, name=name, version="4.0.0")
    assert r.status_code == 409 and "already exists in non-volatile index" in r.json()["message"], r.text
    r = raw_upload(s, index, wfn, first, creds, name=name, version="4")
    assert r.status_code == 200 and "identical" in r.reason, r.text
    assert serial(s) == at
    sfn, sdist = sdist_bytes(name, "4.0.0")
    assert raw_upload(s, index, sfn, sdist, creds, name=name, version="4.0.0").status_code == 200
    page = simple_json(s, index, name)
    assert page["versions"] == ["4.0"]
    assert sorted(f["filename"] for f in page["files"]) == sorted([wfn, sfn])
    ver = s.api("GET", f"/{index}/{name}/4.0").json()["result"]
    assert ver["version"] == "4.0" and len(ver["+links"]) == 2
    assert s.api("GET", f"/{index}/{name}").json()["result"].keys() == {"4.0"}


def test_volatile_allows_overwrite_and_delete(engine_server, tmp_path):
    s = engine_server
    auth, index = new_stage(s, "pw")
    name = unique("vol-pkg")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = write_wheel(a, name, "1.0", summary="first")
    changed = write_wheel(b, name, "1.0", summary="second")
    assert twine_upload(s, index, auth[0], "pw", [first]).returncode == 0
    p = twine_upload(s, index, auth[0], "pw", [changed])
    assert p.returncode == 0, p.stdout + p.stderr
    [f] = simple_json(s, index, name)["files"]
    assert f["hashes"]["sha256"] == sha256_file(changed)
    [link] = s.api("GET", f"/{index}/{name}/1.0").json()["result"]["+links"]
    assert [e["what"] for e in link["log"]] == ["overwrite", "upload"] and link["log"][0]["count"] == 1
    assert s.api("GET", f"/{index}/{name}/1.0").json()["result"]["summary"] == "second"
    path = link["href"].split(s.url, 1)[1]
    r = s.api("DELETE", path, auth=auth)
    assert r.status_code == 200, r.text
    assert s.api("GET", f"/{index}/{name}").status_code == 404


def test_oversized_bodies_are_refused(module_servers, tmp_path):
    s = module_servers(args=("--max-upload-size", "100K"))
    auth, index = new_stage(s, "pw")
    name = unique("big-pkg")
    small = write_wheel(tmp_path, name, "1.0")
    big = write_wheel(tmp_path, name, "2.0", module_body=f"DATA = {os.urandom(150_000).hex()!r}\n")
    assert big.stat().st_size > 100 * 1024
    before = serial(s)
    r = raw_upload(s, index, big.name, big.read_bytes(), (auth[0], "pw"), name=name, version="2.0")
    assert r.status_code == 413 and "too large" in r.json()["message"]
    p = twine_upload(s, index, auth[0], "pw", [big])
    assert p.returncode != 0 and "413" in p.stdout + p.stderr
    assert serial(s) == before
    assert twine_upload(s, index, auth[0], "pw", [small]).returncode == 0
    assert [f["filename"] for f in simple_json(s, index, name)["files"]] == [small.name]


def _doc_zip(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", f"<html><body>{text}</body></html>")
        zf.writestr("api/module.html", "<p>api</p>")
    return buf.getvalue()


@pytest.mark.parametrize("version", ["1.0", ""])
def test_doc_upload(engine_server, version):
    s = engine_server
    auth, index = new_stage(s)
    name = unique("Doc_Pkg")
    fn, data = wheel_bytes(name, "1.0")
    assert raw_upload(s, index, fn, data, (auth[0], "pw"), name=name, version="1.0").status_code == 200
    doc = _doc_zip("hello docs")
    r = requests.post(f"{s.url}/{index}/", data={":action": "doc_upload", "name": name, "version": version},
                      files={"content": (f"{name}-1.0.doc.zip", doc)}, auth=(auth[0], "pw"), timeout=30)
    assert r.status_code == 200, r.text
    links = s.api("GET", f"/{index}/{name}/1.0").json()["result"]["+links"]
    [docs] = [x for x in links if x["rel"] == "doczip"]
    norm = name.lower().replace("_", "-")
    assert docs["href"].endswith(f"/{norm}-1.0.doc.zip")
    assert requests.get(docs["href"], timeout=30).content == doc
    # the doc zip is not a release file: not on the simple page
    assert [f["filename"] for f in simple_json(s, index, norm)["files"]] == [fn]
    # an unsafe zip is refused
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.html", "x")
    r = requests.post(f"{s.url}/{index}/", data={":action": "doc_upload", "name": name, "version": "1.0"},
                      files={"content": ("x.zip", buf.getvalue())}, auth=(auth[0], "pw"), timeout=30)
    assert r.status_code == 400 and "outside the documentation tree" in r.json()["message"]
