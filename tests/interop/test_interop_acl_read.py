"""pip and uv install from a read-restricted index (``acl_read``) with Basic auth in the URL.

alice's index ``secret`` is readable by alice only. With her name and password
in the index URL (``http://alice:PW@127.0.0.1:3141/alice/secret/+simple/``) pip and uv
answer the server's ``401 WWW-Authenticate: Basic realm="devpi"`` and install;
without credentials, or with bob's, they install nothing.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from interop.helpers import output, run, unique
from support.dists import write_wheel


@pytest.fixture(scope="module")
def secret(iserver, tmp_path_factory) -> dict[str, str]:
    owner, other = unique("alice"), unique("bob")
    auth = iserver.create_user(owner, "alice-pw")
    iserver.create_user(other, "bob-pw")
    iserver.create_index(auth, "secret", acl_read=[owner])
    wheel = write_wheel(tmp_path_factory.mktemp("acl"), "privpkg-zq", "2.0")
    assert iserver.upload(f"{owner}/secret", wheel, (owner, "alice-pw")).status_code == 200
    host = iserver.url.split("://", 1)[1]
    path = f"{owner}/secret/+simple/"
    return {"with_auth": f"http://{owner}:alice-pw@{host}/{path}", "anonymous": f"{iserver.url}/{path}",
            "bob": f"http://{other}:bob-pw@{host}/{path}"}


def installed(target: Path) -> list[str]:
    return sorted(d.name for d in target.glob("*.dist-info"))


@pytest.mark.compat("pip", "install from a read-restricted index")
def test_pip_installs_with_basic_auth_in_the_url(tools, sandbox, secret, tmp_path):
    python = tools("pip").python

    def pip(url: str, target: Path, check: bool = True):
        return run([python, "-m", "pip", "install", "--no-input", "--target", target, "--index-url", url,
                    "privpkg-zq"], env=sandbox, check=check)

    pip(secret["with_auth"], tmp_path / "ok")
    assert installed(tmp_path / "ok") == ["privpkg_zq-2.0.dist-info"]
    for who in ("anonymous", "bob"):
        proc = pip(secret[who], tmp_path / who, check=False)
        assert proc.returncode != 0 and installed(tmp_path / who) == []
        assert "privpkg_zq-2.0" not in output(proc)


@pytest.mark.compat("uv", "pip install from a read-restricted index")
def test_uv_installs_with_basic_auth_in_the_url(tools, sandbox, secret, tmp_path):
    env = tools("uv")

    def uv(url: str, target: Path, check: bool = True):
        return run([env.exe("uv"), "pip", "install", "--python", env.python, "--target", target,
                    "--index-url", url, "privpkg-zq"], env=sandbox, check=check)

    uv(secret["with_auth"], tmp_path / "ok")
    assert installed(tmp_path / "ok") == ["privpkg_zq-2.0.dist-info"]
    for who in ("anonymous", "bob"):
        proc = uv(secret[who], tmp_path / who, check=False)
        assert proc.returncode != 0 and installed(tmp_path / who) == []


@pytest.mark.compat("twine", "upload with a scoped token to a read-restricted index")
def test_tokens_upload_and_read_a_restricted_index(tools, sandbox, iserver, tmp_path):
    """The issue's CI story: a job uploads with an upload-only token, another installs with a
    read-only one; neither token does the other's job."""
    owner = unique("alice")
    auth = iserver.create_user(owner, "alice-pw")
    iserver.create_index(auth, "secret", acl_read=[owner])

    def token(*actions: str) -> str:
        r = iserver.api("POST", f"/{owner}/+token-create", auth=auth,
                        json={"allowed": list(actions), "indexes": [f"{owner}/secret"],
                              "expires": time.time() + 3600})
        assert r.status_code == 200, r.text
        return r.json()["result"]["token"]

    upload_token, read_token = token("upload"), token("read")
    wheel = write_wheel(tmp_path, "tokpkg-zq", "3.0")
    twine = tools("twine")
    run([twine.exe("twine"), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
         f"{iserver.url}/{owner}/secret/", "-u", "__token__", "-p", upload_token, str(wheel)], env=sandbox)
    refused = run([twine.exe("twine"), "upload", "--non-interactive", "--disable-progress-bar",
                   "--repository-url", f"{iserver.url}/{owner}/secret/", "-u", "__token__", "-p", read_token,
                   str(write_wheel(tmp_path, "tokpkg-zq", "3.1"))], env=sandbox, check=False)
    assert refused.returncode != 0 and "403" in output(refused)

    python = tools("pip").python
    host = iserver.url.split("://", 1)[1]

    def pip(secret: str, target: Path, check: bool = True):
        url = f"http://__token__:{secret}@{host}/{owner}/secret/+simple/"
        return run([python, "-m", "pip", "install", "--no-input", "--target", target, "--index-url", url,
                    "tokpkg-zq"], env=sandbox, check=check)

    pip(read_token, tmp_path / "ok")
    assert installed(tmp_path / "ok") == ["tokpkg_zq-3.0.dist-info"]
    proc = pip(upload_token, tmp_path / "no", check=False)
    assert proc.returncode != 0 and installed(tmp_path / "no") == []
