"""Pushing a release the mirror serves into a private index (pinning an upstream release):
its files are downloaded and checked if need be, the target gets real rows with the wheel's
metadata, installs from the target need no upstream, and the overlay guard and the
permission checks hold before anything is fetched."""
from __future__ import annotations

import uuid

import pytest
import requests
from mirror_helpers import JSON, pip_install
from support.receiver import upload_receiver

PW = "pw"


def _user(server) -> tuple[str, str]:
    name = f"pm{uuid.uuid4().hex[:8]}"
    auth = server.create_user(name, PW)
    server.create_index(auth, "prod", bases=[])
    server.create_index(auth, "dev", bases=["root/pypi"])
    return auth


def _push(server, source: str, name: str, version: str, auth, **body) -> requests.Response:
    return requests.request("PUSH", f"{server.url}/{source}", json={"name": name, "version": version, **body},
                            auth=auth, headers={"Accept": "application/json"}, timeout=120)


def test_a_mirrored_release_is_pinned_in_a_private_index(mserver, upstream, tmp_path):
    auth = _user(mserver)
    project = f"pinme{uuid.uuid4().hex[:6]}"
    wheel = upstream.add_wheel(project, "1.0", summary="pinned from upstream", requires_python=">=3.8")
    sdist = upstream.add_sdist(project, "1.0")
    upstream.add_wheel(project, "2.0")
    before = upstream.downloads(wheel.filename)
    r = _push(mserver, "root/pypi", project, "1.0", auth, targetindex=f"{auth[0]}/prod")
    assert r.status_code == 200, r.text
    stored = [a[2] for a in r.json()["result"] if a[1] == "store_releasefile"]
    assert sorted(p.rsplit("/", 1)[1] for p in stored) == sorted([wheel.filename, sdist.filename])
    assert upstream.downloads(wheel.filename) == before + 1

    release = mserver.api("GET", f"/{auth[0]}/prod/{project}/1.0").json()["result"]
    assert release["summary"] == "pinned from upstream"
    assert release["requires_python"] == ">=3.8"
    links = {lk["href"].rsplit("/", 1)[1]: lk for lk in release["+links"]}
    assert set(links) == {wheel.filename, sdist.filename}
    simple = f"{mserver.url}/{auth[0]}/prod/+simple/{project}/"
    got = requests.get(simple, headers=JSON, timeout=30).json()
    assert sorted(f["filename"] for f in got["files"]) == sorted([wheel.filename, sdist.filename])
    whl = next(f for f in got["files"] if f["filename"] == wheel.filename)
    assert whl["hashes"]["sha256"] == wheel.sha256
    assert whl.get("core-metadata")  # the wheel's METADATA, read from the checked wheel
    fetched = requests.get(requests.compat.urljoin(simple, whl["url"]), timeout=30)
    assert fetched.content == wheel.content, (whl["url"], fetched.text[:300])

    upstream.fail_status = 503  # the pinned copy needs no upstream
    try:
        r = pip_install(f"{mserver.url}/{auth[0]}/prod/+simple/", tmp_path / "t", f"{project}==1.0")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        upstream.fail_status = None



def test_every_pushed_wheel_offers_its_own_core_metadata(mserver, upstream):
    """A release with several wheels: each one's METADATA is read from that wheel, so an
    installer that reads core metadata (PEP 658) gets the right one for the wheel it picks."""
    auth = _user(mserver)
    project = f"tags{uuid.uuid4().hex[:6]}"
    wheels = [upstream.add_wheel(project, "1.0", tag=tag, requires_dist=[dep])
              for tag, dep in (("py2-none-any", "six"), ("py3-none-any", "attrs"))]
    r = _push(mserver, "root/pypi", project, "1.0", auth, targetindex=f"{auth[0]}/prod")
    assert r.status_code == 200, r.text
    simple = f"{mserver.url}/{auth[0]}/prod/+simple/{project}/"
    files = {f["filename"]: f for f in requests.get(simple, headers=JSON, timeout=30).json()["files"]}
    assert set(files) == {w.filename for w in wheels}
    for wheel, dep in zip(wheels, ("six", "attrs"), strict=True):
        assert files[wheel.filename].get("core-metadata"), wheel.filename
        meta = requests.get(requests.compat.urljoin(simple, files[wheel.filename]["url"]) + ".metadata", timeout=30)
        assert meta.status_code == 200, meta.text
        assert f"Requires-Dist: {dep}" in meta.text, (wheel.filename, meta.text)


def test_pushed_through_a_stage_that_inherits_the_mirror(mserver, upstream):
    auth = _user(mserver)
    project = f"viadev{uuid.uuid4().hex[:6]}"
    wheel = upstream.add_wheel(project, "1.0")
    r = _push(mserver, f"{auth[0]}/dev", project, "1.0.0", auth, targetindex=f"{auth[0]}/prod")  # PEP 440-equal
    assert r.status_code == 200, r.text
    release = mserver.api("GET", f"/{auth[0]}/prod/{project}/1.0").json()["result"]
    assert [lk["href"].rsplit("/", 1)[1] for lk in release["+links"]] == [wheel.filename]


def test_a_private_name_is_not_looked_up_upstream(mserver, upstream, tmp_path):
    auth = _user(mserver)
    project = f"private{uuid.uuid4().hex[:6]}"
    r = requests.post(f"{mserver.url}/{auth[0]}/dev/", auth=auth, timeout=30,
                      data={":action": "submit", "name": project, "version": "1.0"})
    assert r.status_code == 200, r.text
    upstream.add_wheel(project, "99.0")
    upstream.reset_log()
    r = _push(mserver, f"{auth[0]}/dev", project, "99.0", auth, targetindex=f"{auth[0]}/prod")
    assert r.status_code == 404, r.text
    assert upstream.count(lambda rec: rec.project == project) == 0
    r = _push(mserver, "root/pypi", project, "99.0", auth, targetindex=f"{auth[0]}/prod")  # straight from the mirror
    assert r.status_code == 200, r.text
    assert upstream.count(lambda rec: rec.project == project) > 0


def test_a_wrong_hash_upstream_pushes_nothing(mserver, upstream):
    auth = _user(mserver)
    project = f"badhash{uuid.uuid4().hex[:6]}"
    wheel = upstream.add_wheel(project, "1.0")
    upstream.wrong_hash.add(wheel.filename)
    try:
        r = _push(mserver, "root/pypi", project, "1.0", auth, targetindex=f"{auth[0]}/prod")
    finally:
        upstream.wrong_hash.discard(wheel.filename)
    assert r.status_code == 502 and "does not match" in r.json()["message"], r.text
    assert mserver.api("GET", f"/{auth[0]}/prod/{project}").status_code == 404


def test_no_download_before_the_target_and_the_rights_are_checked(mserver, upstream):
    auth = _user(mserver)
    project = f"noauth{uuid.uuid4().hex[:6]}"
    wheel = upstream.add_wheel(project, "1.0")
    for who, target, status in ((None, f"{auth[0]}/prod", 401), (auth, "nobody/nothing", 404),
                                (auth, "no-slash", 400)):
        r = _push(mserver, "root/pypi", project, "1.0", who, targetindex=target)
        assert r.status_code == status, r.text
    assert upstream.downloads(wheel.filename) == 0
    r = _push(mserver, "root/pypi", project, "3.0", auth, targetindex=f"{auth[0]}/prod")
    assert r.status_code == 404 and "no release/files found" in r.json()["message"], r.text


@pytest.fixture
def external():
    """An external repository (the upload API twine speaks) that keeps each upload's form."""
    with upload_receiver() as receiver:
        yield receiver


def test_a_mirrored_release_goes_out_to_an_external_repository(mserver, upstream, external):
    """The files an external repository receives are upstream's bytes, checked on the way,
    with the metadata read from the wheel."""
    url, got = external.url, external.got
    auth = _user(mserver)
    project = f"outward{uuid.uuid4().hex[:6]}"
    wheel = upstream.add_wheel(project, "1.0", summary="passed on")
    sdist = upstream.add_sdist(project, "1.0")
    r = _push(mserver, "root/pypi", project, "1.0", auth, posturl=url, username="u", password="p")
    assert r.status_code == 200, r.text
    uploads = {u.form["content"][0]: u.form for u in got if u.form[":action"][1] == b"file_upload"}
    assert set(uploads) == {wheel.filename, sdist.filename}
    for sent in (wheel, sdist):
        form = uploads[sent.filename]
        assert form["content"][1] == sent.content
        assert form["sha256_digest"][1].decode() == sent.sha256
        assert form["version"][1] == b"1.0" and form["summary"][1] == b"passed on"

    bad = f"outbad{uuid.uuid4().hex[:6]}"  # a file that does not match its page never goes out
    bad_wheel = upstream.add_wheel(bad, "1.0")
    upstream.wrong_hash.add(bad_wheel.filename)
    got.clear()
    try:
        r = _push(mserver, "root/pypi", bad, "1.0", auth, posturl=url, username="u", password="p")
    finally:
        upstream.wrong_hash.discard(bad_wheel.filename)
    assert r.status_code == 502 and "does not match" in r.json()["message"], r.text
    assert got == []
