"""The server behind a reverse proxy that adds a path prefix (``--outside-url http://host/devpi``).

The original client derives the server root from the ``login`` URL of
``/+api``, and pip follows the simple pages' links, so every URL the server
builds (JSON hrefs, redirects, page links) must stay under the prefix. The
proxy answers 404 to anything outside it and records such requests.
"""
from __future__ import annotations

import pytest
import requests
from interop.helpers import output, run, sha256
from interop.prefixproxy import PrefixProxy
from support.dists import write_sdist, write_wheel
from support.server import ServerProcess


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    with PrefixProxy("/devpi") as proxy:
        server = ServerProcess(tmp_path_factory.mktemp("prefixed") / "server",
                               args=("--outside-url", proxy.url)).start()
        proxy.backend = server.url
        yield proxy, server
        server.stop()


@pytest.mark.compat("devpi-client", "behind a path prefix")
def test_devpi_client_behind_prefix(devpi, proxied, tmp_path):
    proxy, server = proxied
    proxy.outside_requests.clear()
    url = proxy.url
    assert f"using server: {url}/" in output(devpi("use", url))
    devpi("user", "-c", "pre", "password=prepw")
    devpi("login", "pre", "--password", "prepw")
    devpi("index", "-c", "dev")
    devpi("index", "-c", "prod")
    assert f"current devpi index: {url}/pre/dev" in output(devpi("use", "pre/dev"))
    files = [write_wheel(tmp_path, "pre-pkg", "1.0"), write_sdist(tmp_path, "pre-pkg", "1.0")]
    devpi("upload", *files)
    hrefs = devpi("list", "pre-pkg").stdout.split()
    assert sorted(hrefs) == sorted(f"{url}/pre/dev/+f/{sha256(f)[:3]}/{sha256(f)[3:16]}/{f.name}" for f in files)
    listed = devpi("list", "Pre_Pkg").stdout.splitlines()  # via the redirect to the normalised name
    assert [line for line in listed if not line.startswith("*redirected")] == hrefs
    # relative to the index (the client itself joins an *absolute* path to the host, not to the prefix)
    assert '"type": "projectconfig"' in devpi("getjson", "pre-pkg").stdout
    devpi("push", "pre-pkg==1.0", "pre/prod")
    assert len(devpi("list", "--index", "pre/prod", "pre-pkg").stdout.split()) == 2
    out = output(devpi("refresh", "pre-pkg"))
    assert "Couldn't refresh" not in out, out
    devpi("remove", "-y", "pre-pkg==1.0")
    assert proxy.outside_requests == []


@pytest.mark.compat("pip", "install behind a path prefix")
def test_pip_behind_prefix(tools, sandbox, proxied, tmp_path):
    proxy, server = proxied
    proxy.outside_requests.clear()
    auth = server.create_user("pipper", "pw")
    server.create_index(auth, "base")
    server.create_index(auth, "dev", bases="pipper/base")
    assert server.upload("pipper/base", write_wheel(tmp_path, "pre-dep", "1.0"), auth).status_code == 200
    wheel = write_wheel(tmp_path, "pre-app", "1.0", requires_dist=["pre-dep"])
    assert server.upload("pipper/dev", wheel, auth).status_code == 200
    pip = tools("pip")
    run([pip.python, "-m", "pip", "install", "--target", tmp_path / "t", "--index-url",
         f"{proxy.url}/pipper/dev/+simple/", "pre-app"], env=sandbox)
    assert sorted(p.name for p in (tmp_path / "t").glob("*.dist-info")) == [
        "pre_app-1.0.dist-info", "pre_dep-1.0.dist-info"]
    r = requests.get(f"{proxy.url}/pipper/dev/+simple/Pre_App/", timeout=30)  # redirect to the normalised page
    assert r.status_code == 200 and r.url == f"{proxy.url}/pipper/dev/+simple/pre-app/"
    assert proxy.outside_requests == []
