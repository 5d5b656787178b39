"""--blob-storage s3://BUCKET/PREFIX against a real SeaweedFS (tests/support/seaweed.py).

Each write is followed by a look into the bucket itself: the object under PREFIX/<sha256>
with the file's size, and, after a delete and a collection, none.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from srv_helpers import new_stage, sha256_file, simple_json, twine_upload, unique
from support.dists import write_wheel
from support.seaweed import Seaweed
from support.server import ServerProcess, server_factory

PREFIX = "devpi/blobs"


def admin(seaweed: Seaweed, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devpi.client", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **seaweed.env()})


@pytest.fixture(scope="module")
def s3_servers(tmp_path_factory, seaweed):
    with server_factory(tmp_path_factory.mktemp("s3srv")) as make:
        def start(*args: str) -> tuple[ServerProcess, str]:
            bucket = seaweed.make_bucket(unique("b").lower().replace("_", "-"))
            s = make(env=seaweed.env(), args=("--blob-storage", f"s3://{bucket}/{PREFIX}", *args))
            return s, bucket
        yield start


@pytest.fixture(scope="module")
def s3_server(s3_servers):
    return s3_servers()


def file_url(s: ServerProcess, index: str, project: str, link: dict) -> str:
    return urljoin(f"{s.url}/{index}/+simple/{project}/", link["url"]).split("#")[0]


def objects(seaweed: Seaweed, bucket: str) -> dict[str, int]:
    return {k.rpartition("/")[2]: size for k, size in seaweed.keys(bucket, PREFIX + "/").items()}


def test_upload_install_push_yank_delete_gc(s3_server, seaweed, tmp_path):
    s, bucket = s3_server
    auth, index = new_stage(s)
    s.create_index(auth, "prod")
    name = unique("s3pkg")
    wheel = write_wheel(tmp_path, name, "1.0")
    sha = sha256_file(wheel)
    p = twine_upload(s, index, auth[0], "pw", [wheel])
    assert p.returncode == 0, p.stdout + p.stderr
    assert objects(seaweed, bucket)[sha] == wheel.stat().st_size  # the object, not only the row

    # pip installs it, checking the sha256 of the link against the bytes it got
    [link] = simple_json(s, index, name)["files"]
    assert link["hashes"]["sha256"] == sha
    target = tmp_path / "target"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
                        "--index-url", f"{s.url}/{index}/+simple/", name], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert list(target.glob("*.dist-info"))
    r = requests.get(file_url(s, index, name, link), timeout=30)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha

    # push: the same bytes, the same object
    r = s.api("PUSH", f"/{index}", json={"name": name, "version": "1.0", "targetindex": f"{auth[0]}/prod"},
              auth=auth)
    assert r.status_code == 200, r.text
    assert [f["hashes"]["sha256"] for f in simple_json(s, f"{auth[0]}/prod", name)["files"]] == [sha]
    assert sha in objects(seaweed, bucket)

    # yank changes rows only
    r = s.api("POST", f"/{index}/{name}/1.0/+yank", json={"reason": "broken"}, auth=auth)
    assert r.status_code == 200, r.text
    assert simple_json(s, index, name)["files"][0]["yanked"] == "broken"
    assert objects(seaweed, bucket)[sha] == wheel.stat().st_size

    # delete from both indexes: the object stays until gc runs past the grace period
    for ix in (index, f"{auth[0]}/prod"):
        [pushed] = simple_json(s, ix, name)["files"]
        r = requests.delete(file_url(s, ix, name, pushed), auth=(auth[0], "pw"), timeout=30)
        assert r.status_code == 200, r.text
    assert sha in objects(seaweed, bucket)
    p = admin(seaweed, "gc", "--serverdir", str(s.serverdir), "--grace", "3600", "--json")
    assert p.returncode == 0, p.stderr
    assert sha in objects(seaweed, bucket)  # too young
    p = admin(seaweed, "gc", "--serverdir", str(s.serverdir), "--grace", "0", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["collection"]["deleted"] >= 1
    assert sha not in objects(seaweed, bucket)


def test_fsck_finds_a_changed_object_and_quarantines_it(s3_server, seaweed, tmp_path):
    s, bucket = s3_server
    auth, index = new_stage(s)
    wheel = write_wheel(tmp_path, unique("fsckpkg"), "1.0")
    assert s.upload(index, wheel, (auth[0], "pw")).status_code == 200
    sha = sha256_file(wheel)
    p = admin(seaweed, "fsck", "--serverdir", str(s.serverdir), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert sha not in json.loads(p.stdout).get("corrupt", [])
    seaweed.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{sha}", Body=b"x" * wheel.stat().st_size)
    p = admin(seaweed, "fsck", "--serverdir", str(s.serverdir), "--json", "--repair")
    assert p.returncode == 1, p.stdout + p.stderr
    assert sha in p.stdout
    assert sha not in objects(seaweed, bucket)  # moved to the server dir's quarantine
    [kept] = list((s.serverdir / "quarantine").rglob(f"{sha}.*"))
    assert kept.read_bytes() == b"x" * wheel.stat().st_size  # the changed bytes, kept for a human


def drop_local_copies(s) -> None:
    """Empty the server's local cache of blobs, so the next download reads the bucket."""
    cache = s.serverdir / "s3-spool" / "cache"
    assert cache.is_dir()
    for p in cache.iterdir():
        p.unlink()


def test_a_local_copy_that_rotted_is_fetched_again(s3_server, seaweed, tmp_path):
    s, bucket = s3_server
    auth, index = new_stage(s)
    name = unique("copypkg")
    wheel = write_wheel(tmp_path, name, "1.0")
    assert s.upload(index, wheel, (auth[0], "pw")).status_code == 200
    sha = sha256_file(wheel)
    [link] = simple_json(s, index, name)["files"]
    url = file_url(s, index, name, link)
    drop_local_copies(s)
    assert requests.get(url, timeout=30).content == wheel.read_bytes()  # fetched into the cache
    copy = s.serverdir / "s3-spool" / "cache" / sha
    assert copy.read_bytes() == wheel.read_bytes()
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))  # changes its ctime too: hashed again before it is sent
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == wheel.read_bytes()
    assert copy.read_bytes() == wheel.read_bytes()  # replaced by a good one from the bucket


def test_changed_object_is_never_served(s3_server, seaweed, tmp_path):
    s, bucket = s3_server
    auth, index = new_stage(s)
    name = unique("rotpkg")
    wheel = write_wheel(tmp_path, name, "1.0")
    assert s.upload(index, wheel, (auth[0], "pw")).status_code == 200
    sha = sha256_file(wheel)
    [link] = simple_json(s, index, name)["files"]
    url = file_url(s, index, name, link)
    assert requests.get(url, timeout=30).content == wheel.read_bytes()
    bad = bytes(b ^ 1 for b in wheel.read_bytes())
    seaweed.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{sha}", Body=bad)
    # the local copy made at upload (hashed then) still answers, with the uploaded bytes
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == wheel.read_bytes()
    drop_local_copies(s)  # gone (trimmed, another worker's): the bucket's object is read
    for _ in range(2):
        try:
            r = requests.get(url, timeout=30)
        except requests.exceptions.RequestException:
            continue  # the connection cut before the last piece: nothing whole was served
        assert r.content != bad
        if r.status_code == 200:
            assert len(r.content) < len(bad)
        else:
            assert r.json()["message"]


def test_sigkill_during_upload_leaves_no_row_without_object(s3_servers, seaweed, tmp_path):
    """Kill the server at several moments of a 12 MB upload (bytes still arriving, the
    spool complete and the PUT under way, later): after each restart, every file the index
    lists has its object."""
    s, bucket = s3_servers()
    auth, index = new_stage(s)
    name = unique("killpkg")
    wheel = write_wheel(tmp_path, name, "1.0", module_body="DATA = " + repr(os.urandom(4 * 1024 * 1024)))
    data = wheel.read_bytes()
    listed: list[float | None] = []  # kills after which the file was there (committed first)
    for after_spool in (0.0, 0.05, 0.15, 0.4, 3.0, None):
        t = threading.Thread(target=_try_upload, args=(s, index, wheel, auth), daemon=True)
        t.start()
        if after_spool is None:
            time.sleep(0.05)  # the bytes still arriving
        else:
            _wait_spooled(s, len(data))  # all bytes in the spool file: the PUT starts now
            time.sleep(after_spool)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
        t.join(60)
        s.restart()
        auth = s.login(auth[0], "pw")
        stored = objects(seaweed, bucket)
        shas = listed_shas(s, index, name)
        for sha in shas:
            assert stored.get(sha) == len(data), (after_spool, sha)
        listed += [after_spool] if shas else []
        if shas:
            s.api("DELETE", f"/{index}/{name}/1.0", auth=auth)
    print("kills after which the file was listed:", listed)
    # the store still takes the file whole after all this
    r = s.upload(index, wheel, (auth[0], "pw"))
    assert r.status_code == 200, r.text
    assert objects(seaweed, bucket)[sha256_file(wheel)] == len(data)
    assert listed_shas(s, index, name) == [sha256_file(wheel)]


def listed_shas(s: ServerProcess, index: str, project: str) -> list[str]:
    """The sha256 of every release file the index lists for ``project``."""
    r = s.api("GET", f"/{index}/{project}")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return [link["hash_spec"].split("=", 1)[1] for version in r.json()["result"].values()
            for link in version.get("+links", ()) if link.get("rel") == "releasefile"]


def _wait_spooled(s: ServerProcess, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in (s.serverdir / "s3-spool" / "tmp").glob("p*/upload-*"):
            try:
                if f.stat().st_size >= size:
                    return
            except FileNotFoundError:
                pass
        time.sleep(0.005)
    raise AssertionError("the upload never reached the spool file")


def _try_upload(s: ServerProcess, index: str, wheel: Path, auth) -> None:
    try:
        s.upload(index, wheel, (auth[0], "pw"))
    except requests.exceptions.RequestException:
        pass


def test_redirect_to_presigned_url_and_pip_follows(s3_servers, seaweed, tmp_path):
    s, bucket = s3_servers("--blob-redirect", "300")
    auth, index = new_stage(s)
    name = unique("redirpkg")
    wheel = write_wheel(tmp_path, name, "1.0")
    assert s.upload(index, wheel, (auth[0], "pw")).status_code == 200
    [link] = simple_json(s, index, name)["files"]
    url = file_url(s, index, name, link)
    r = requests.get(url, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert r.headers["Location"].startswith(f"{seaweed.endpoint}/{bucket}/{PREFIX}/{sha256_file(wheel)}?")
    assert requests.get(r.headers["Location"], timeout=30).content == wheel.read_bytes()
    target = tmp_path / "target"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--target",
                        str(target), "--index-url", f"{s.url}/{index}/+simple/", name],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert list(target.glob("*.dist-info"))


def test_server_dir_refuses_another_store(s3_server, seaweed):
    s, bucket = s3_server
    p = subprocess.run([sys.executable, "-m", "devpi.client", "gc", "--serverdir", str(s.serverdir),
                        "--blob-storage", f"s3://{bucket}/other"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **seaweed.env()})
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and "keeps its files in" in p.stderr
    assert "Traceback" not in p.stderr


def test_mirror_cache_budget_refused_on_s3(s3_server, seaweed):
    s, _ = s3_server
    p = admin(seaweed, "gc", "--serverdir", str(s.serverdir), "--mirror-cache-size", "1G")
    assert p.returncode != 0 and "local blob store only" in p.stderr and "Traceback" not in p.stderr


def test_mirror_file_in_the_bucket_a_changed_one_refused_then_fetched_again_after_fsck(tmp_path_factory, seaweed, upstream):
    f = upstream.add_wheel(unique("mirrored"), "1.0")
    bucket = seaweed.make_bucket(unique("m").lower())
    with server_factory(tmp_path_factory.mktemp("s3mirror")) as make:
        s = make(env=seaweed.env(), mirror_url=upstream.url, args=("--blob-storage", f"s3://{bucket}/{PREFIX}"))
        project = f.filename.split("-")[0]
        [link] = simple_json(s, "root/pypi", project)["files"]
        url = file_url(s, "root/pypi", project, link)
        assert requests.get(url, timeout=60).content == f.content
        deadline = time.monotonic() + 30  # stored once the client has its bytes
        while f.sha256 not in objects(seaweed, bucket) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert objects(seaweed, bucket)[f.sha256] == len(f.content)
        seaweed.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{f.sha256}", Body=b"\0" * len(f.content))
        drop_local_copies(s)
        for _ in range(2):  # as for a local blob: cut off, then refused, never served whole
            try:
                r = requests.get(url, timeout=60)
            except requests.exceptions.RequestException:
                continue
            assert r.content != b"\0" * len(f.content)
            assert r.status_code >= 400 and r.json()["message"] or len(r.content) < len(f.content)
        p = admin(seaweed, "fsck", "--serverdir", str(s.serverdir), "--repair")
        assert p.returncode == 1 and "1 blobs quarantined, 1 mirror files to download again" in p.stdout, p.stderr
        assert f.sha256 not in objects(seaweed, bucket)
        r = requests.get(url, timeout=60)
        assert r.status_code == 200 and r.content == f.content
        assert upstream.downloads(f.filename) == 2
        deadline = time.monotonic() + 30
        while f.sha256 not in objects(seaweed, bucket) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert objects(seaweed, bucket)[f.sha256] == len(f.content)
        body = seaweed.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{f.sha256}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == f.sha256
