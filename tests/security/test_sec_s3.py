"""--blob-storage s3://: the store's credentials stay out of everything the server shows
(logs, /+status, /+metrics, error bodies, start-up refusals), and the URL cannot make keys
outside its prefix.

Credentials come from the AWS environment only; the secret here is a distinctive string
(tests/support/seaweed.py) so that any copy of it is found.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from support.dists import write_wheel
from support.seaweed import ACCESS_KEY, SECRET_KEY
from support.server import server_factory

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from srv_helpers import new_stage, unique

PREFIX = "sec/blobs"


def _start(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "srv"),
                           "--host", "127.0.0.1", "--port", "0", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, cwd=tmp_path)


def _clean(text: str) -> None:
    assert SECRET_KEY not in text
    assert "Traceback" not in text


@pytest.mark.parametrize("url", [
    "s3://bucket/../escape",
    "s3://bucket/a/../../b",
    "s3://bucket/a//b",
    "s3://bucket/./a",
    "s3://bucket/a/%2e%2e/b",
    "s3://bucket/a\\..\\b",
    "s3://bucket/a b",
    "s3://bucket/a?prefix=/",
    "s3://bucket/a#x",
    "s3://../bucket",
    "s3://Bucket_Upper/a",
    "s3://bucket\x00/a",
    f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/a",
    "s3://" + "b" * 64 + "/a",
    "s3://bucket/" + "a" * 201,
])
def test_a_url_that_could_leave_its_prefix_refuses_the_start_in_one_line(tmp_path, seaweed, url):
    if "\x00" in url:  # cannot be an argv: the same check through the parser
        from devpi.server.store.s3_blobstore import S3UrlError, parse_url

        with pytest.raises(S3UrlError):
            parse_url(url)
        return
    done = _start(tmp_path, seaweed.env(), "--blob-storage", url)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--blob-storage" in lines[0], done.stderr
    _clean(done.stderr + done.stdout)
    assert not (tmp_path / "srv" / "blob-storage").exists()  # nothing recorded for a refused URL


def test_wrong_credentials_and_missing_bucket_refuse_the_start_without_secrets(tmp_path, seaweed):
    bucket = seaweed.make_bucket(unique("sec").lower())
    done = _start(tmp_path, {**seaweed.env(), "AWS_SECRET_ACCESS_KEY": SECRET_KEY + "wrong"},
                  "--blob-storage", f"s3://{bucket}/{PREFIX}")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    _clean(done.stderr + done.stdout)
    done = _start(tmp_path, seaweed.env(), "--blob-storage", f"s3://no-such-bucket-{os.getpid()}/{PREFIX}")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    _clean(done.stderr + done.stdout)


def test_credentials_never_shown(tmp_path_factory, seaweed, tmp_path):
    """A server on S3 taking uploads, serving, refusing, and failing an S3 call (the store
    stopped answering for this bucket): the secret is in no log line, page or error."""
    bucket = seaweed.make_bucket(unique("sec").lower())
    with server_factory(tmp_path_factory.mktemp("s3sec")) as make:
        s = make(env=seaweed.env(), args=("--blob-storage", f"s3://{bucket}/{PREFIX}"))
        auth, index = new_stage(s)
        wheel = write_wheel(tmp_path, unique("secpkg"), "1.0")
        assert s.upload(index, wheel, (auth[0], "pw")).status_code == 200
        bodies = [s.api("GET", "/+status").text, requests.get(s.url + "/+metrics", timeout=30).text,
                  s.api("GET", f"/{index}/+f/000/0000000000000/nothing.whl").text]
        # the bucket goes away under the server: an upload fails, its error shows no secret
        c = seaweed.client()
        for key in seaweed.keys(bucket):
            c.delete_object(Bucket=bucket, Key=key)
        c.delete_bucket(Bucket=bucket)
        other = write_wheel(tmp_path, unique("secpkg"), "2.0")
        r = s.upload(index, other, (auth[0], "pw"))
        assert r.status_code == 503, r.text  # the store, not the server, failed: retry later
        assert r.headers["Content-Type"].startswith("application/json") and r.json()["message"], r.text
        bodies.append(r.text)
        log = s.log_text()
    for text in [*bodies, log]:
        _clean(text)
        assert ACCESS_KEY not in text


@pytest.mark.parametrize("args, says", [
    (("--blob-redirect", "-1"), "--blob-redirect"),
    (("--blob-redirect", "1e9"), "--blob-redirect"),
    (("--blob-redirect", str(7 * 24 * 3600 + 1)), "--blob-redirect"),
    (("--blob-redirect", "60"), "--blob-redirect needs an s3:// --blob-storage"),
])
def test_blob_redirect_refuses_bad_values_in_one_line(tmp_path, args, says):
    done = _start(tmp_path, {}, *args)
    assert done.returncode != 0
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
