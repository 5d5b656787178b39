"""The static view (``--static-dir``) behind the nginx site ``devpi gen-config`` writes.

A real server with ``--static-dir`` and a real nginx with the generated site: writes go
through nginx, and after each one returns the static files are checked (the pages it
changed are gone or new, a deleted file is gone from DIR) and nginx answers the new
state. Pages nginx serves itself (no ``X-Devpi-Serial``, which only the server sends)
are byte for byte what the server answers, for every Accept header the site decides.
"""
from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from support.dists import wheel_bytes
from support.nginx import gen_config, need_nginx, nginx_conf, running_nginx, wait_for_logged
from support.ports import free_port

PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
              "text/html; q=0.01")
UV_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON = "application/vnd.pypi.simple.v1+json"


class Site:
    """A server with --static-dir and nginx in front of it, at ``url`` (path prefix /pkgs)."""

    def __init__(self, server, url: str, static: Path, access_log: Path):
        self.s, self.url, self.static, self.access_log = server, url, static, access_log
        self.auth = server.login("root", "root")

    def index(self, name: str, **config) -> None:
        r = requests.put(f"{self.url}/root/{name}", json={"type": "stage", "bases": [], **config},
                         headers={"Accept": "application/json"}, auth=self.auth, timeout=30)
        assert r.status_code == 200, r.text

    def upload(self, index: str, name: str, version: str, body: str = "") -> str:
        filename, data = wheel_bytes(name, version, module_body=f"X = {body!r}\n")
        r = requests.post(f"{self.url}/root/{index}/", auth=self.auth, timeout=60,
                          data={":action": "file_upload", "name": name, "version": version},
                          files={"content": (filename, data)})
        assert r.status_code == 200, r.text
        return hashlib.sha256(data).hexdigest()

    def page(self, index: str, project: str, accept: str | None = None, via_nginx: bool = True) -> requests.Response:
        base = self.url if via_nginx else self.s.url
        headers = {"Accept": accept} if accept is not None else {}
        suffix = f"{project}/" if project else ""
        return requests.get(f"{base}/root/{index}/+simple/{suffix}", headers=headers, timeout=30)

    def static_page(self, index: str, project: str, fmt: str) -> Path:
        return self.static / "root" / index / "+simple" / (f"{project}/" if project else "") / f"index.{fmt}"


@pytest.fixture
def site(make_server, tmp_path) -> Site:
    need_nginx()
    static = tmp_path / "static"
    s = make_server(args=("--static-dir", str(static)))
    nport = free_port()
    url = f"http://127.0.0.1:{nport}/pkgs"
    out = tmp_path / "conf"
    p = gen_config("--serverdir", str(s.serverdir), "--port", str(s.port), "--outside-url", url,
                   "--static-dir", str(static), "--output", str(out), "--nginx-logdir", str(tmp_path / "nlog"))
    assert p.returncode == 0, p.stderr
    assert f"--static-dir {static}" in (out / "devpi.service").read_text()
    (tmp_path / "nlog").mkdir()
    (tmp_path / "nginx").mkdir()
    with running_nginx(nginx_conf(tmp_path / "nginx", out / "nginx-devpi.conf"), nport):
        yield Site(s, url, static, tmp_path / "nlog" / "devpi.access.log")


def served_by_nginx(r: requests.Response) -> bool:
    """The server marks every answer with its serial; nginx's own answers have none."""
    return "X-Devpi-Serial" not in r.headers


def fill(site: Site, index: str, project: str) -> None:
    """Ask for the pages once (a miss: the server answers and fills the static view)."""
    for accept in (None, PIP_ACCEPT):
        assert site.page(index, project, accept).status_code == 200


def file_links(page: requests.Response, base: str) -> dict[str, str]:
    """filename -> absolute URL (without the hash fragment) of a JSON page's files."""
    return {f["filename"]: urljoin(base, f["url"]).split("#")[0] for f in page.json()["files"]}


def test_writes_through_nginx_update_the_static_view_before_they_return(site, tmp_path):
    site.index("dev")
    site.index("prod")
    sha10 = site.upload("dev", "static-pkg", "1.0", "one")
    fill(site, "dev", "static-pkg")
    fill(site, "dev", "")
    for fmt in ("html", "json"):
        assert site.static_page("dev", "static-pkg", fmt).exists()
        assert site.static_page("dev", "", fmt).exists()
    # hits come from nginx now, the same bytes the server answers
    hit = site.page("dev", "static-pkg", PIP_ACCEPT)
    assert served_by_nginx(hit) and hit.headers["Content-Type"] == JSON
    assert hit.content == site.page("dev", "static-pkg", PIP_ACCEPT, via_nginx=False).content
    page_url = f"{site.url}/root/dev/+simple/static-pkg/"
    [(wheel, wheel_url)] = file_links(hit, page_url).items()
    assert wheel_url.startswith(f"{site.url}/root/dev/+f/")
    first = requests.get(wheel_url, timeout=30)  # a miss: the server answers and links the blob in
    assert first.status_code == 200 and not served_by_nginx(first)
    relpath = wheel_url[len(f"{site.url}/root/dev/"):]
    static_file = site.static / "root" / "dev" / relpath
    assert static_file.is_file() and static_file.stat().st_mode & 0o444 == 0o444
    again = requests.get(wheel_url, timeout=30)
    assert served_by_nginx(again) and again.content == first.content
    assert hashlib.sha256(again.content).hexdigest() == sha10
    assert again.headers["X-Content-Type-Options"] == "nosniff"
    # a file's JSON metadata is the server's, whatever is in DIR
    meta = requests.get(wheel_url, headers={"Accept": "application/json"}, timeout=30)
    assert not served_by_nginx(meta) and meta.json()["result"]["hashes"]["sha256"] == sha10

    # upload: the project's pages and every project list go before the upload returns
    site.upload("dev", "static-pkg", "1.1", "two")
    for fmt in ("html", "json"):
        assert not site.static_page("dev", "static-pkg", fmt).exists()
        assert not site.static_page("dev", "", fmt).exists()
    assert set(file_links(site.page("dev", "static-pkg", PIP_ACCEPT), page_url)) == {
        wheel, wheel.replace("1.0", "1.1")}
    fill(site, "dev", "static-pkg")

    # yank: the page is rendered again, with the yank
    r = requests.post(f"{site.url}/root/dev/static-pkg/1.0/+yank", json={"reason": "bad"}, auth=site.auth,
                      headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert not site.static_page("dev", "static-pkg", "json").exists()
    yanked = {f["filename"]: f.get("yanked") for f in site.page("dev", "static-pkg", PIP_ACCEPT).json()["files"]}
    assert yanked[wheel] == "bad"
    fill(site, "dev", "static-pkg")
    assert served_by_nginx(site.page("dev", "static-pkg", PIP_ACCEPT))

    # push 1.0 to prod: prod's pages appear with it
    r = requests.request("PUSH", f"{site.url}/root/dev", json={"name": "static-pkg", "version": "1.0",
                                                                 "targetindex": "root/prod"},
                         auth=site.auth, headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    prod = site.page("prod", "static-pkg", PIP_ACCEPT)
    assert prod.status_code == 200 and [f["filename"] for f in prod.json()["files"]] == [wheel]
    assert site.static_page("prod", "static-pkg", "json").exists()

    # delete 1.0 on dev: its file leaves DIR, nginx asks the server, which says it is gone
    r = requests.delete(f"{site.url}/root/dev/static-pkg/1.0", auth=site.auth,
                        headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert not static_file.exists()
    assert not site.static_page("dev", "static-pkg", "json").exists()
    gone = requests.get(wheel_url, timeout=30)
    assert gone.status_code == 410 and not served_by_nginx(gone)
    assert set(file_links(site.page("dev", "static-pkg", PIP_ACCEPT), page_url)) == {wheel.replace("1.0", "1.1")}
    assert site.static_page("prod", "static-pkg", "json").exists() is False  # a project's pages go everywhere

    # deleting the index takes its whole directory
    fill(site, "prod", "static-pkg")
    assert (site.static / "root" / "prod").is_dir()
    r = requests.delete(f"{site.url}/root/prod", auth=site.auth, headers={"Accept": "application/json"},
                        timeout=30)
    assert r.status_code in (200, 201), r.text
    assert not (site.static / "root" / "prod").exists()
    assert site.page("prod", "static-pkg", PIP_ACCEPT).status_code == 404


@pytest.mark.parametrize("accept", [None, "*/*", "text/html", BROWSER_ACCEPT, PIP_ACCEPT, UV_ACCEPT, JSON,
                                    "application/vnd.pypi.simple.latest+json",
                                    "application/vnd.pypi.simple.v1+html",  # the server says which type
                                    "application/vnd.pypi.simple.v1+json;q=0.5, text/html",
                                    "text/html;q=0.1, application/vnd.pypi.simple.v1+json",
                                    "image/png"])
def test_nginx_negotiates_html_and_json_as_the_server_does(site, accept):
    site.index("neg")
    site.upload("neg", "neg-pkg", "1.0")
    for project in ("neg-pkg", ""):
        fill(site, "neg", project)
        direct = site.page("neg", project, accept, via_nginx=False)
        for _ in range(2):  # the second from DIR where nginx may decide
            proxied = site.page("neg", project, accept)
            assert proxied.status_code == direct.status_code == 200
            assert proxied.content == direct.content
            assert proxied.headers["Content-Type"] == direct.headers["Content-Type"]
            assert "Accept" in proxied.headers["Vary"]
    # the Accept headers the site decides itself (the first entry wins); the rest are the server's
    decided = accept in (None, "*/*", "text/html", BROWSER_ACCEPT, PIP_ACCEPT, UV_ACCEPT, JSON,
                         "application/vnd.pypi.simple.latest+json")
    assert served_by_nginx(site.page("neg", "neg-pkg", accept)) is decided
    # ?format= is the server's to decide
    q = requests.get(f"{site.url}/root/neg/+simple/neg-pkg/?format=json", timeout=30)
    assert not served_by_nginx(q) and q.headers["Content-Type"] == JSON


def _tool(name: str) -> Path:
    from interop.toolenv import tool_env

    return tool_env(name).bin / name


@pytest.mark.parametrize("client", ["pip", "uv"])
def test_pip_and_uv_install_through_the_static_view_with_matching_hashes(site, tmp_path, client):
    site.index("inst")
    sha = site.upload("inst", "inst-pkg", "2.0", "payload")
    req = tmp_path / "req.txt"
    req.write_text(f"inst-pkg==2.0 --hash=sha256:{sha}\n")
    index = f"{site.url}/root/inst/+simple/"
    for round_ in range(2):  # the first fills DIR through the server, the second is nginx's alone
        target = tmp_path / f"t{round_}"
        if client == "pip":
            cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps", "--require-hashes",
                   "--target", str(target), "--index-url", index, "-r", str(req)]
        else:
            cmd = [str(_tool("uv")), "pip", "install", "--no-cache", "--no-deps", "--require-hashes",
                   "--target", str(target), "--index-url", index, "-r", str(req)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "payload" in (target / "inst_pkg" / "__init__.py").read_text()
    wheels = list((site.static / "root" / "inst" / "+f").rglob("*.whl"))
    assert len(wheels) == 1 and hashlib.sha256(wheels[0].read_bytes()).hexdigest() == sha
    wait_for_logged(site.access_log, "/pkgs/root/inst/+simple/inst-pkg/")


EXPIRY = 8  # the test mirrors' mirror_cache_expiry (seconds)
MARGIN = 3  # repos/static_view.py EXPIRY_MARGIN


def mirror(site: Site, name: str, url: str, expiry: int = EXPIRY) -> None:
    r = requests.put(f"{site.url}/root/{name}", json={"type": "mirror", "mirror_url": url,
                                                      "mirror_cache_expiry": expiry},
                     headers={"Accept": "application/json"}, auth=site.auth, timeout=30)
    assert r.status_code == 200, r.text


def buckets(static: Path) -> dict[int, list[str]]:
    """second -> the paths its expiry bucket lists."""
    found = {}
    for b in (static / ".devpi-static-state" / "expiry").iterdir():
        found[int(b.name)] = b.read_text().splitlines()
    return found


def test_mirror_backed_pages_leave_dir_by_their_deadline_and_upstream_changes_show(site, upstream):
    mirror(site, "up", upstream.url)
    site.index("onmirror", bases=["root/up"])
    upstream.add_wheel("expiry-pkg", "1.0")
    before = time.time()
    for index in ("up", "onmirror"):
        for accept in (None, PIP_ACCEPT):
            r = site.page(index, "expiry-pkg", accept)
            assert r.status_code == 200 and not served_by_nginx(r), r.text
    after = time.time()
    listed = {path: second for second, paths in buckets(site.static).items() for path in paths}
    for index in ("up", "onmirror"):
        for fmt in ("html", "json"):
            assert site.static_page(index, "expiry-pkg", fmt).is_file()
            # its deadline: the page's cache life (mirror_cache_expiry from the fetch) less the margin
            second = listed[f"root/{index}/+simple/expiry-pkg/index.{fmt}"]
            assert before + EXPIRY - MARGIN - 1 <= second <= after + EXPIRY - MARGIN
        # a mirror-backed project list has no deadline: the server keeps it
        assert site.page(index, "", PIP_ACCEPT).status_code == 200
        assert not site.static_page(index, "", "json").exists()
    hit = site.page("onmirror", "expiry-pkg", PIP_ACCEPT)
    assert served_by_nginx(hit) and hit.headers["Cache-Control"] == "max-age=0, must-revalidate"
    assert "Expires" not in hit.headers  # nothing promised beyond the deadline
    upstream.add_wheel("expiry-pkg", "2.0")

    def shows_2_0() -> bool:
        r = site.page("onmirror", "expiry-pkg", PIP_ACCEPT)
        return {f["filename"].split("-")[1] for f in r.json()["files"]} == {"1.0", "2.0"}

    deadline = time.monotonic() + 60
    while not shows_2_0():
        assert time.monotonic() < deadline, "the upstream change never showed through nginx"
        time.sleep(0.2)
    # swept by its deadline, rendered afresh, put again with a new one
    assert b"expiry_pkg-2.0" in site.static_page("onmirror", "expiry-pkg", "json").read_bytes() \
        or not site.static_page("onmirror", "expiry-pkg", "json").exists()


def test_an_upload_to_a_stage_merging_the_mirror_removes_its_page_before_returning(site, upstream):
    mirror(site, "up2", upstream.url, expiry=600)
    site.index("merging", bases=["root/up2"], mirror_whitelist=["merge-pkg"])
    upstream.add_wheel("merge-pkg", "1.0")
    fill(site, "merging", "merge-pkg")
    fill(site, "up2", "merge-pkg")
    assert site.static_page("merging", "merge-pkg", "json").is_file()
    assert site.static_page("up2", "merge-pkg", "json").is_file()
    site.upload("merging", "merge-pkg", "9.0")
    for fmt in ("html", "json"):
        assert not site.static_page("merging", "merge-pkg", fmt).exists()
    r = site.page("merging", "merge-pkg", PIP_ACCEPT)
    assert {f["filename"].split("-")[1] for f in r.json()["files"]} == {"1.0", "9.0"}


def test_a_stale_mirror_answer_is_never_written(site):
    from support.upstream import Upstream

    with Upstream() as up:
        mirror(site, "gone", up.url, expiry=MARGIN + 1)  # a deadline 1 s out is too short: not put
        up.add_wheel("stale-pkg", "1.0")
        assert site.page("gone", "stale-pkg", PIP_ACCEPT).status_code == 200
        assert not site.static_page("gone", "stale-pkg", "json").exists()
        mirror(site, "gone2", up.url, expiry=MARGIN + 5)
        assert site.page("gone2", "stale-pkg", PIP_ACCEPT).status_code == 200
        assert site.static_page("gone2", "stale-pkg", "json").is_file()
    deadline = time.monotonic() + 60
    while site.static_page("gone2", "stale-pkg", "json").exists():  # swept by its deadline
        assert time.monotonic() < deadline
        time.sleep(0.2)
    deadline = time.monotonic() + 60
    while True:  # upstream is down: the last good copy, marked stale, from the server only
        r = site.page("gone2", "stale-pkg", PIP_ACCEPT)
        assert r.status_code == 200 and not served_by_nginx(r)
        if "X-Devpi-Stale" in r.headers:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert not site.static_page("gone2", "stale-pkg", "json").exists()
    assert not any("gone2" in p for paths in buckets(site.static).values() for p in paths)


def test_buckets_left_by_a_killed_process_are_swept_at_the_next_start(make_server, upstream, tmp_path):
    static = tmp_path / "static"
    s = make_server(args=("--static-dir", str(static)))
    auth = s.login("root", "root")
    r = s.api("PUT", "/root/killed", json={"type": "mirror", "mirror_url": upstream.url,
                                           "mirror_cache_expiry": 25}, auth=auth)
    assert r.status_code == 200, r.text
    upstream.add_wheel("killed-pkg", "1.0")
    r = requests.get(f"{s.url}/root/killed/+simple/killed-pkg/", headers={"Accept": JSON}, timeout=30)
    assert r.status_code == 200, r.text
    page = static / "root" / "killed" / "+simple" / "killed-pkg" / "index.json"
    assert page.is_file()
    s.kill()  # SIGKILL: its sweeper never gets to the page
    (second,) = [sec for sec, paths in buckets(static).items() if "root/killed/+simple/killed-pkg/index.json" in paths]
    assert page.is_file()
    s.start()  # every commit was removed: DIR is kept, and with it the bucket
    assert requests.get(f"{s.url}/+status", timeout=30).status_code == 200
    deadline = time.monotonic() + 60
    while page.exists() or second in buckets(static):
        assert time.monotonic() < deadline, "the dead process's bucket was never swept"
        time.sleep(0.2)
    assert time.time() >= second  # by its deadline, not before


def test_a_repair_that_quarantines_a_blob_empties_dir_at_the_next_start(make_server, tmp_path):
    """A restart keeps DIR (every commit was removed), but a file in DIR is a hard link to
    its blob: after ``devpi fsck --repair`` moved a rotten blob away, the next start empties
    DIR so nginx stops serving the rotten bytes."""
    from ops_helpers import admin_json, blob_path

    static = tmp_path / "static"
    s = make_server(args=("--static-dir", str(static)))
    auth = s.login("root", "root")
    s.create_index(auth, "rot")
    filename, data = wheel_bytes("rot-pkg", "1.0")
    r = requests.post(f"{s.url}/root/rot/", auth=auth, timeout=60, files={"content": (filename, data)},
                      data={":action": "file_upload", "name": "rot-pkg", "version": "1.0"})
    assert r.status_code == 200, r.text
    page = requests.get(f"{s.url}/root/rot/+simple/rot-pkg/", headers={"Accept": JSON}, timeout=30)
    (url,) = [urljoin(page.url, f["url"]).split("#")[0] for f in page.json()["files"]]
    assert requests.get(url, timeout=30).status_code == 200
    in_dir = static / url[len(f"{s.url}/"):]
    assert in_dir.is_file()
    s.restart()
    assert requests.get(f"{s.url}/+status", timeout=30).status_code == 200
    assert in_dir.is_file()  # kept across a clean restart
    s.stop()
    sha = hashlib.sha256(data).hexdigest()
    with open(blob_path(s.serverdir, sha), "r+b") as f:  # the link's bytes rot with the blob's
        f.write(b"rotten")
    report = admin_json("fsck", "--serverdir", str(s.serverdir), "--repair", expect=1)
    assert report["quarantined"] == [sha]
    s.start()
    assert requests.get(f"{s.url}/+status", timeout=30).status_code == 200  # set up (DIR opened)
    assert not in_dir.exists()
    assert not (s.serverdir / "static-view.reset").exists()


def test_nginx_never_serves_the_state_or_the_expiry_buckets(site, upstream):
    mirror(site, "up3", upstream.url, expiry=600)
    upstream.add_wheel("state-pkg", "1.0")
    fill(site, "up3", "state-pkg")
    state = (site.static / ".devpi-static-state" / "state").read_text()
    second = min(buckets(site.static))  # (html and json: one or two seconds)
    for path in ("/.devpi-static-state/state", "/.devpi-static-state/lock", f"/.devpi-static-state/expiry/{second}",
                 "/.devpi-static-state/expiry/+simple/", f"/.devpi-static-state/expiry/+f/{second}",
                 "/.devpi-static-view"):
        r = requests.get(f"{site.url}{path}", timeout=30)
        assert r.status_code == 404 and not served_by_nginx(r), (path, r.status_code)
        assert state not in r.text and "state-pkg" not in r.text


def test_big_pages_are_kept_gzipped_for_nginx_and_leave_with_the_page(site, tmp_path):
    site.index("gz")
    for i in range(12):  # enough files for a page well above the gzip threshold
        site.upload("gz", "gz-pkg", f"1.{i}")
    server_json = site.page("gz", "gz-pkg", PIP_ACCEPT, via_nginx=False).content
    fill(site, "gz", "gz-pkg")
    for fmt in ("html", "json"):
        plain, packed = site.static_page("gz", "gz-pkg", fmt), site.static_page("gz", "gz-pkg", fmt + ".gz")
        assert len(plain.read_bytes()) >= 1400
        assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    r = requests.get(f"{site.url}/root/gz/+simple/gz-pkg/", headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip"},
                     timeout=30, stream=True)
    raw = r.raw.read()
    assert served_by_nginx(r) and r.headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(raw) == server_json
    r = requests.get(f"{site.url}/root/gz/+simple/gz-pkg/", headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "identity"},
                     timeout=30)
    assert served_by_nginx(r) and "Content-Encoding" not in r.headers and r.content == server_json
    # a small page has no gzipped copy
    site.upload("gz", "tiny-pkg", "1.0")
    fill(site, "gz", "tiny-pkg")
    assert site.static_page("gz", "tiny-pkg", "json").is_file()
    assert not site.static_page("gz", "tiny-pkg", "json.gz").exists()
    # a write takes both away before it returns, and nginx then answers the new page
    site.upload("gz", "gz-pkg", "2.0")
    for fmt in ("html", "json", "html.gz", "json.gz"):
        assert not site.static_page("gz", "gz-pkg", fmt).exists(), fmt
    r = requests.get(f"{site.url}/root/gz/+simple/gz-pkg/", headers={"Accept": PIP_ACCEPT}, timeout=30)
    assert "gz_pkg-2.0-py3-none-any.whl" in {f["filename"] for f in r.json()["files"]}
