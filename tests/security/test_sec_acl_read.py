"""Read access (acl_read): a private index leaks nothing outside its readers.

alice keeps ``alice/secret`` (``acl_read=alice``): a wheel, an sdist, docs and a
tox result of ``secretpkg-zq 7.7.7``; root keeps ``root/privtree``, a mirror of
a local tree readable by alice only. The attacker is anonymous, or bob (a real
account, not a reader). Through every surface they try (simple pages, files,
metadata, JSON, docs, test runs, the changelog, the listings, push, refresh, a
public index built on the private one) they must get 401 (anonymous, with
``WWW-Authenticate: Basic realm="devpi"``) or 403 (bob), a JSON message, and
no project name, version, file name or hash of alice's, while alice (and root)
read it all. Once per storage engine (SQLite, PostgreSQL).
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import requests
from support.dists import write_sdist, write_wheel
from support.upstream import make_wheel

PROJECT = "secretpkg-zq"
VERSION = "7.7.7"
TREE_PROJECT = "treesecret-zq"
ATTACKERS = ["anonymous", "bob"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def world(engine_srv, tmp_path_factory):
    """The server with alice's secret index (and a public one on top), root's private mirror."""
    srv = engine_srv
    tmp = tmp_path_factory.mktemp("acl")
    alice = srv.create_user("alice", "alice-pw")
    srv.create_user("bob", "bob-pw")
    srv.create_index(alice, "secret", acl_read=["alice"])
    srv.create_index(alice, "pub", bases=["alice/secret"])  # public, on the private base
    wheel = write_wheel(tmp, PROJECT, VERSION)
    sdist = write_sdist(tmp, PROJECT, VERSION)
    for dist in (wheel, sdist):
        assert srv.upload("alice/secret", dist, ("alice", "alice-pw")).status_code == 200
    doczip = tmp / f"{PROJECT}-{VERSION}.doc.zip"
    import zipfile

    with zipfile.ZipFile(doczip, "w") as z:
        z.writestr("index.html", "<html>secret docs</html>")
    with open(doczip, "rb") as f:
        r = requests.post(f"{srv.url}/alice/secret/", auth=("alice", "alice-pw"), timeout=60,
                          data={":action": "doc_upload", "name": PROJECT, "version": VERSION},
                          files={"content": (doczip.name, f)})
    assert r.status_code == 200, r.text
    links = srv.api("GET", f"/alice/secret/{PROJECT}/{VERSION}", auth=alice).json()["result"]["+links"]
    wheel_link = next(lk for lk in links if lk["href"].endswith(".whl"))
    r = requests.post(wheel_link["href"], json={"testenvs": {"py3": {"test": [{"retcode": 0}]}}},
                      auth=("alice", "alice-pw"), timeout=60)
    assert r.status_code == 200, r.text
    r = srv.api("POST", "/alice/secret/+testruns", auth=alice, json={
        "file": wheel_link["href"], "host": "secrethost-zq", "platform": "linux", "python": "3.12.1"})
    assert r.status_code == 201, r.text
    # root's mirror of a local tree with a hash-less link (served under +e/)
    name, wheel_bytes, _ = make_wheel(TREE_PROJECT, "3.1.4")
    (tmp / "files").mkdir()
    (tmp / "files" / name).write_bytes(wheel_bytes)
    (tmp / "simple" / TREE_PROJECT).mkdir(parents=True)
    (tmp / "simple" / "index.html").write_text(f'<a href="{TREE_PROJECT}/">{TREE_PROJECT}</a>')
    (tmp / "simple" / TREE_PROJECT / "index.html").write_text(f'<a href="../../files/{name}">{name}</a>')
    root = srv.login("root", "root")
    srv.create_index(root, "privtree", type="mirror", mirror_url=f"file://{tmp}/simple/", acl_read=["alice"])
    page = requests.get(f"{srv.url}/root/privtree/+simple/{TREE_PROJECT}/", headers={
        "Accept": "application/vnd.pypi.simple.v1+json", **basic("alice", "alice-pw")}, timeout=60)
    assert page.status_code == 200, page.text
    tree_url = requests.compat.urljoin(page.url, page.json()["files"][0]["url"])
    assert "/+e/" in tree_url
    links = srv.api("GET", f"/alice/secret/{PROJECT}/{VERSION}", auth=alice).json()["result"]["+links"]
    secrets = {PROJECT, VERSION, TREE_PROJECT, "secrethost-zq", name, wheel.name, sdist.name, doczip.name,
               hashlib.sha256(wheel_bytes).hexdigest(), hashlib.sha256(wheel.read_bytes()).hexdigest(),
               hashlib.sha256(sdist.read_bytes()).hexdigest()}
    secrets |= {lk["href"].rsplit("/", 1)[1] for lk in links}
    return {"srv": srv, "links": links, "tree_url": tree_url, "secrets": secrets}


def ask(world, who: str, method: str, path_or_url: str, **kw) -> requests.Response:
    srv = world["srv"]
    url = path_or_url if path_or_url.startswith("http") else srv.url + path_or_url
    headers = kw.pop("headers", {})
    if who == "bob":
        headers.update(basic("bob", "bob-pw"))
    elif who == "alice":
        headers.update(basic("alice", "alice-pw"))
    return requests.request(method, url, headers=headers, timeout=60, allow_redirects=False, **kw)


def assert_no_leak(world, r: requests.Response, asked: str = "") -> None:
    """``asked``: a name the request itself gave (a 404 may echo it)."""
    text = r.text + json.dumps(dict(r.headers))
    leaked = sorted(s for s in world["secrets"] if s in text and s != asked)
    assert not leaked, f"{r.request.method} {r.url} leaked {leaked}: {r.status_code} {r.text[:300]}"


def assert_refused(world, who: str, r: requests.Response) -> None:
    """401 with devpi's Basic challenge for anonymous, 403 for bob; JSON; nothing leaked."""
    expected = 401 if who == "anonymous" else 403
    assert r.status_code == expected, (r.request.method, r.url, r.status_code, r.text[:300])
    if r.request.method == "HEAD":
        pass
    elif r.request.headers.get("Accept", "").startswith("text/html"):  # a browser: the web UI's error page
        assert r.headers["Content-Type"].startswith(("application/json", "text/html"))
    else:
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["message"]
    if expected == 401:
        assert r.headers["WWW-Authenticate"] == 'Basic realm="devpi"'
    assert_no_leak(world, r)


def href(world, suffix: str) -> str:
    return next(lk["href"] for lk in world["links"] if lk["href"].endswith(suffix))


@pytest.mark.parametrize("who", ATTACKERS)
@pytest.mark.parametrize("accept", ["text/html", "application/vnd.pypi.simple.v1+json"])
def test_simple_pages(world, who, accept):
    for path in ("/alice/secret/+simple/", f"/alice/secret/+simple/{PROJECT}/", "/alice/secret/+simple/nothere/"):
        for _ in range(2):  # the second would be a cached hit for a reader
            assert_refused(world, who, ask(world, who, "GET", path, headers={"Accept": accept}))
        assert ask(world, "alice", "GET", path, headers={"Accept": accept}).status_code in (200, 404)
        assert_refused(world, who, ask(world, who, "GET", path, headers={"Accept": accept}))
    # an installer asking the index URL itself gets the project list: refused as well
    assert_refused(world, who, ask(world, who, "GET", "/alice/secret/", headers={"User-Agent": "pip/24.0"}))


@pytest.mark.parametrize("who", ATTACKERS)
def test_files_metadata_and_docs(world, who):
    for suffix in (".whl", ".tar.gz", ".doc.zip"):
        url = href(world, suffix)
        assert ask(world, "alice", "GET", url).status_code == 200
        for method in ("GET", "HEAD"):
            assert_refused(world, who, ask(world, who, method, url))
    meta = href(world, ".whl") + ".metadata"
    assert ask(world, "alice", "GET", meta).status_code == 200
    assert_refused(world, who, ask(world, who, "GET", meta))
    # a made-up path is refused the same way: no telling which files exist
    assert_refused(world, who, ask(world, who, "GET", "/alice/secret/+f/abc/def0123456789/x-1.0.tar.gz"))


@pytest.mark.parametrize("who", ATTACKERS)
def test_external_mirror_files(world, who):
    url = world["tree_url"]
    assert ask(world, "alice", "GET", url).status_code == 200
    assert_refused(world, who, ask(world, who, "GET", url))
    for path in ("/root/privtree/+simple/", f"/root/privtree/+simple/{TREE_PROJECT}/", "/root/privtree"):
        assert_refused(world, who, ask(world, who, "GET", path, headers={"Accept": "application/json"}))


@pytest.mark.parametrize("who", ATTACKERS)
def test_project_version_and_index_json(world, who):
    for path in (f"/alice/secret/{PROJECT}", f"/alice/secret/{PROJECT}/{VERSION}", "/alice/secret",
                 "/alice/secret/", "/alice/secret/nothere", "/alice/secret?no_projects="):
        assert ask(world, "alice", "GET", path, headers={"Accept": "application/json"}).status_code in (200, 404)
        assert_refused(world, who, ask(world, who, "GET", path, headers={"Accept": "application/json"}))


@pytest.mark.parametrize("who", ATTACKERS)
def test_test_runs_and_toxresults(world, who):
    paths = [f"/alice/secret/+testruns?project={PROJECT}&version={VERSION}",
             f"/alice/secret/{PROJECT}/{VERSION}/+testruns", "/alice/secret/+testruns/1"]
    for path in paths:
        assert_refused(world, who, ask(world, who, "GET", path, headers={"Accept": "application/json"}))
    runs = ask(world, "alice", "GET", paths[1], headers={"Accept": "application/json"})
    assert runs.status_code == 200 and runs.json()["result"], runs.text
    tox = [lk["href"] for lk in world["links"] if lk["rel"] == "toxresult"]
    assert tox
    assert_refused(world, who, ask(world, who, "GET", tox[0]))
    # posting a result (anyone may by default) would tell which files exist: refused too
    posted = ask(world, who, "POST", href(world, ".whl"), json={"testenvs": {}})
    assert_refused(world, who, posted)
    opened = ask(world, who, "POST", "/alice/secret/+testruns", json={"file": "x"})
    assert_refused(world, who, opened)


@pytest.mark.parametrize("who", ATTACKERS)
def test_changelog(world, who):
    srv = world["srv"]
    current = int(requests.get(srv.url + "/+api", timeout=30).headers["X-Devpi-Serial"])
    withheld = 0
    for serial in range(current + 1):
        r = ask(world, who, "GET", f"/+changelog/{serial}", headers={"Accept": "application/json"})
        assert r.status_code == 200
        assert_no_leak(world, r)
        withheld += r.json()["result"].get("withheld", 0)
    assert withheld  # they were there, and held back
    seen = "".join(ask(world, "alice", "GET", f"/+changelog/{s}").text for s in range(current + 1))
    assert PROJECT in seen  # alice reads her own index's changes


@pytest.mark.parametrize("who", ATTACKERS)
def test_user_and_index_listings(world, who):
    for path in ("/", "/alice", "/root"):
        r = ask(world, who, "GET", path, headers={"Accept": "application/json"})
        assert r.status_code == 200
        assert_no_leak(world, r)
        indexes = r.json()["result"] if path != "/" else {u: c for u, c in r.json()["result"].items()}
        names = json.dumps(indexes)
        assert '"secret"' not in names and '"privtree"' not in names
        assert ("pub" in names) == (path in ("/", "/alice"))  # the public one stays listed
    mine = ask(world, "alice", "GET", "/alice", headers={"Accept": "application/json"}).json()
    assert "secret" in mine["result"]["indexes"]


@pytest.mark.parametrize("who", ATTACKERS)
def test_push_from_the_private_index(world, who):
    srv = world["srv"]
    if who == "bob":
        srv.api("PUT", "/bob/dev", json={}, auth=("bob", srv.login("bob", "bob-pw")[1]))
    body = {"name": PROJECT, "version": VERSION, "targetindex": "bob/dev"}
    assert_refused(world, who, ask(world, who, "POST", "/alice/secret", json=body))
    assert_refused(world, who, ask(world, who, "PUSH", "/alice/secret", json=body))
    if who == "bob":  # nor through bob's own public index built on alice's
        r = ask(world, who, "PUT", "/bob/onit", json={"bases": ["alice/secret"]})
        assert r.status_code == 200
        r = ask(world, who, "POST", "/bob/onit", json=body)
        assert r.status_code == 404, r.text
        r = ask(world, who, "GET", f"/bob/onit/+simple/{PROJECT}/")
        assert r.status_code == 404
        assert_no_leak(world, r, asked=PROJECT)


@pytest.mark.parametrize("who", ATTACKERS)
def test_refresh(world, who):
    assert_refused(world, who, ask(world, who, "POST", f"/alice/secret/+simple/{PROJECT}/refresh"))
    assert_refused(world, who, ask(world, who, "POST", f"/root/privtree/+simple/{TREE_PROJECT}/refresh"))


@pytest.mark.parametrize("who", ATTACKERS)
def test_public_index_on_a_private_base(world, who):
    """alice/pub is public and has alice/secret as its base: its readers see nothing of it. A
    page naming the base's project answers exactly as one naming a project that never existed
    (the name asked for is echoed in both: it is the asker's own)."""
    for accept in ("text/html", "application/vnd.pypi.simple.v1+json", "application/json"):
        for path in ("/alice/pub/+simple/", "/alice/pub"):
            for _ in range(2):
                r = ask(world, who, "GET", path, headers={"Accept": accept})
                assert r.status_code == 200, (path, r.status_code, r.text[:200])
                assert_no_leak(world, r)
        templates = ["/alice/pub/+simple/{}/"]
        if accept != "text/html":  # a browser gets the web UI's pages (tests/web/)
            templates += ["/alice/pub/{}", "/alice/pub/{}/" + VERSION, "/alice/pub/{}/" + VERSION + "/+testruns"]
        for template in templates:
            for _ in range(2):
                real = ask(world, who, "GET", template.format(PROJECT), headers={"Accept": accept})
                made_up = ask(world, who, "GET", template.format("neverwas-zq"), headers={"Accept": accept})
                assert real.status_code == made_up.status_code, (template, real.status_code, real.text[:200])
                assert real.text.replace(PROJECT, "neverwas-zq") == made_up.text, template
    # alice, a reader of both, sees the base's release through alice/pub
    r = ask(world, "alice", "GET", f"/alice/pub/+simple/{PROJECT}/")
    assert r.status_code == 200 and VERSION in r.text


def test_the_owner_and_root_read_everything(world):
    srv = world["srv"]
    for who in ("alice", "root"):
        headers = basic(who, "alice-pw" if who == "alice" else "root")
        r = requests.get(f"{srv.url}/alice/secret/+simple/{PROJECT}/", headers=headers, timeout=30)
        assert r.status_code == 200 and VERSION in r.text
    bad = requests.get(f"{srv.url}/alice/secret/+simple/", headers=basic("alice", "wrong"), timeout=30)
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == 'Basic realm="devpi"'
    assert_no_leak(world, bad)
    # +api stays open: it names URLs, and devpi use needs it before a login
    api = requests.get(f"{srv.url}/alice/secret/+api", timeout=30)
    assert api.status_code == 200 and api.json()["result"]["simpleindex"].endswith("/alice/secret/+simple/")


def test_cached_pages_refuse_and_acl_changes_apply_at_once(world):
    """A page in the cache (rendered for a reader) is refused to others, in the event loop's fast
    path too; making a public index private takes effect with the change's answer."""
    srv = world["srv"]
    alice = srv.login("alice", "alice-pw")
    srv.create_index(alice, "flip")
    wheel = write_wheel(Path(srv.serverdir).parent, "flippkg-zq", "1.0")
    assert srv.upload("alice/flip", wheel, ("alice", "alice-pw")).status_code == 200
    url = f"{srv.url}/alice/flip/+simple/flippkg-zq/"
    first = requests.get(url, timeout=30)
    second = requests.get(url, timeout=30, headers={"If-None-Match": first.headers["ETag"]})
    assert first.status_code == 200 and second.status_code == 304  # the second came from the cache
    r = srv.api("PATCH", "/alice/flip", json=["acl_read=alice"], auth=alice)
    assert r.status_code == 200, r.text
    for _ in range(3):
        refused = requests.get(url, timeout=30)
        assert refused.status_code == 401 and "flippkg-zq-1.0" not in refused.text
        assert requests.get(url, headers=basic("bob", "bob-pw"), timeout=30).status_code == 403
        assert requests.get(url, headers=basic("alice", "alice-pw"), timeout=30).status_code == 200
    r = srv.api("PATCH", "/alice/flip", json=["acl_read=:ANONYMOUS:"], auth=alice)
    assert r.status_code == 200, r.text
    assert requests.get(url, timeout=30).status_code == 200
