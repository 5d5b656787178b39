"""pip and uv install from a read-restricted index (``acl_read``) with Basic auth in the URL.

alice's index ``secret`` is readable by alice only. With her name and password
in the index URL (``http://alice:PW@host/alice/secret/+simple/``) pip and uv
answer the server's ``401 WWW-Authenticate: Basic realm="devpi"`` and install;
without credentials, or with bob's, they install nothing.
"""
from __future__ import annotations

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
