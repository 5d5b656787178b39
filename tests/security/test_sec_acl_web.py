"""Read access control in the web UI (issue 26): a read-restricted index stays private in pages.

The attacker is a browser with no account, or signed in (HTTP Basic) as bob, who is
not in ``acl_read`` of ``alice/secret``. They try every page the web UI serves: the
index, project and version pages (the rendered description), hosted docs, test run
and toxresult pages, search, "used by", the home and user listings, the public index
``alice/open`` whose base is ``alice/secret``, and cached pages a reader has just
filled. What must hold: no project name, version, file name, summary or description
text of alice/secret appears in any answer; a direct page of it is 401 with a Basic
challenge (anonymous) or 403 (bob); listings and search leave it out; alice sees all
of it; a change of ``acl_read`` counts from the next request on.
"""
from __future__ import annotations

import io
import re
import zipfile

import pytest
import requests
from support.dists import wheel_bytes

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) test"}
ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")
PROJECT, VERSION = "hushpkg", "7.3.19"
FILENAME = f"{PROJECT}-{VERSION}-py3-none-any.whl"
SUMMARY = "Zanzibarquux classified helper"
DESCRIPTION = "# Hush\n\nThe xylophonic confidential plans of the team.\n"
DOC_TITLE = "Quokkadoc secret manual"
TOX_HOST = "hushbuilder"
RUN_HOST = "runbuilder"
# what a non-reader must never see; a marker the URL itself names is left out per request
SECRETS = (PROJECT, VERSION, FILENAME, "zanzibarquux", "xylophonic", "quokkadoc", TOX_HOST, RUN_HOST)
WHO = {"anonymous": None, "bob": BOB}


def doc_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", f"<!doctype html><title>{DOC_TITLE}</title><h1>{DOC_TITLE}</h1>")
    return buf.getvalue()


def upload(srv, index: str, name: str, version: str, **meta) -> None:
    filename, data = wheel_bytes(name, version, **meta)
    r = requests.post(f"{srv.url}/{index}/", data={":action": "file_upload", "name": name, "version": version},
                      files={"content": (filename, data)}, auth=ALICE, timeout=60)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def site(engine_srv) -> dict:
    """alice/secret (acl_read: alice) with a release, docs, a toxresult and a test run;
    alice/open (public) built on it with a project of its own that hushpkg requires."""
    srv = engine_srv
    alice = srv.create_user(*ALICE)
    srv.create_user(*BOB)
    srv.create_index(alice, "secret", bases=[], acl_read=["alice"])
    srv.create_index(alice, "open", bases=["alice/secret"])
    upload(srv, "alice/secret", PROJECT, VERSION, summary=SUMMARY, description=DESCRIPTION,
           description_content_type="text/markdown", requires_dist=["publiclib>=1"])
    upload(srv, "alice/open", "publiclib", "1.0", summary="Openly shared helpers")
    r = requests.post(f"{srv.url}/alice/secret/", auth=ALICE, timeout=60,
                      data={":action": "doc_upload", "name": PROJECT, "version": VERSION},
                      files={"content": (f"{PROJECT}-{VERSION}.doc.zip", doc_zip())})
    assert r.status_code == 200, r.text
    data = srv.api("GET", f"/alice/secret/{PROJECT}/{VERSION}", auth=alice).json()["result"]
    href = next(link["href"] for link in data["+links"] if link["rel"] == "releasefile")
    report = {"reportversion": "1", "platform": "linux", "host": TOX_HOST,
              "testenvs": {"py311": {"python": {"version": "3.11.7"},
                                     "test": [{"command": ["pytest"], "retcode": 0, "output": "ok"}]}}}
    r = requests.post(href, json=report, auth=ALICE, headers={"Accept": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text
    r = srv.api("POST", "/alice/secret/+testruns", auth=alice,
                json={"file": href, "host": RUN_HOST, "platform": "linux", "python": "3.11.7"})
    assert r.status_code == 201, r.text
    run = r.json()["result"]
    return {"srv": srv, "toxresult": href.rsplit("/", 1)[1], "run_id": run["id"]}


def get(site: dict, path: str, auth=None, headers=BROWSER, allow_redirects=True) -> requests.Response:
    return requests.get(site["srv"].url + path, auth=auth, headers=headers, timeout=60,
                        allow_redirects=allow_redirects)


def assert_nothing_of_secret(r: requests.Response, path: str) -> None:
    body = r.text.lower()
    named = path.lower()
    for marker in SECRETS:
        if marker.lower() not in named:
            assert marker.lower() not in body, (path, r.status_code, marker)


def assert_refused(site: dict, path: str, who: str) -> None:
    """Anonymous: 401 with the Basic challenge; bob: 403; an HTML page that tells nothing."""
    r = get(site, path, auth=WHO[who], allow_redirects=False)
    if who == "anonymous":
        assert r.status_code == 401, (path, r.status_code, r.text[:300])
        assert r.headers["WWW-Authenticate"] == 'Basic realm="devpi"'
    else:
        assert r.status_code == 403, (path, r.status_code, r.text[:300])
        assert "WWW-Authenticate" not in r.headers
    assert r.headers["Content-Type"].startswith("text/html")
    assert_nothing_of_secret(r, path)


def secret_pages(site: dict) -> dict[str, str]:
    base = f"/alice/secret/{PROJECT}/{VERSION}"
    return {"index": "/alice/secret", "project": f"/alice/secret/{PROJECT}", "version": base,
            "doc": f"{base}/+doc/index.html", "doc-dir": f"{base}/+doc", "doc-latest": f"/alice/secret/{PROJECT}/+doc/latest/",
            "toxresult": f"{base}/+toxresults/{site['toxresult']}", "testrun": f"{base}/+testruns/{site['run_id']}",
            "goto": f"/alice/secret/+goto?name={PROJECT}"}


# -- direct pages of the restricted index ----------------------------------------------
@pytest.mark.parametrize("who", WHO)
def test_index_page_refused(site, who):
    assert_refused(site, "/alice/secret", who)
    assert_refused(site, "/alice/secret/", who)


@pytest.mark.parametrize("who", WHO)
def test_project_page_refused(site, who):
    assert_refused(site, f"/alice/secret/{PROJECT}", who)
    assert_refused(site, "/alice/secret/HushPkg", who)  # refused before the normalising redirect


@pytest.mark.parametrize("who", WHO)
def test_version_page_and_description_refused(site, who):
    assert_refused(site, f"/alice/secret/{PROJECT}/{VERSION}", who)
    assert_refused(site, f"/alice/secret/{PROJECT}/latest", who)


@pytest.mark.parametrize("who", WHO)
def test_doc_pages_refused(site, who):
    pages = secret_pages(site)
    for key in ("doc", "doc-dir", "doc-latest"):
        assert_refused(site, pages[key], who)
    # doc pages are the web UI's for every client, not only browsers
    r = get(site, pages["doc"], auth=WHO[who], headers={"Accept": "*/*"})
    assert r.status_code == (401 if who == "anonymous" else 403)
    assert_nothing_of_secret(r, pages["doc"])


@pytest.mark.parametrize("who", WHO)
def test_toxresult_page_refused(site, who):
    assert_refused(site, secret_pages(site)["toxresult"], who)


@pytest.mark.parametrize("who", WHO)
def test_testrun_page_refused(site, who):
    assert_refused(site, secret_pages(site)["testrun"], who)


@pytest.mark.parametrize("who", WHO)
def test_goto_refused(site, who):
    assert_refused(site, secret_pages(site)["goto"], who)


def test_reader_sees_every_page(site):
    pages = secret_pages(site)
    expected = {"index": SUMMARY, "project": VERSION, "version": "xylophonic confidential plans",
                "doc": DOC_TITLE, "doc-latest": DOC_TITLE, "toxresult": TOX_HOST, "testrun": RUN_HOST}
    for key, text in expected.items():
        r = get(site, pages[key], auth=ALICE)
        assert r.status_code == 200, (key, r.status_code, r.text[:300])
        assert text.lower() in r.text.lower(), key
    r = get(site, f"/alice/secret/{PROJECT}/{VERSION}", auth=ALICE)
    assert FILENAME in r.text and TOX_HOST in r.text and f"+testruns/{site['run_id']}" in r.text
    r = get(site, pages["goto"], auth=ALICE, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/alice/secret/{PROJECT}")


def test_wrong_password_is_challenged_again(site):
    r = get(site, "/alice/secret", auth=("alice", "not-her-password"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="devpi"'
    assert_nothing_of_secret(r, "/alice/secret")


def test_unknown_index_is_404_not_a_challenge(site):
    r = get(site, "/alice/nosuchindex")
    assert r.status_code == 404 and "WWW-Authenticate" not in r.headers


# -- listings, search, used by -------------------------------------------------------------
@pytest.mark.parametrize("who", WHO)
def test_home_and_user_pages_leave_it_out(site, who):
    for path in ("/", "/alice"):
        r = get(site, path, auth=WHO[who])
        assert r.status_code == 200
        assert "alice/open" in r.text
        assert "alice/secret" not in r.text, path
        assert_nothing_of_secret(r, path)
    for path in ("/", "/alice"):
        assert "alice/secret" in get(site, path, auth=ALICE).text


@pytest.mark.parametrize("who", WHO)
def test_search_leaves_it_out(site, who):
    for q in ("zanzibarquux", "xylophonic", PROJECT, "classified helper"):
        path = f"/+search?q={q}"
        r = get(site, path, auth=WHO[who])
        assert r.status_code == 200
        assert "/alice/secret/" not in r.text, q
        assert_nothing_of_secret(r, path)
    r = get(site, "/+search?q=zanzibarquux", auth=ALICE)
    assert f"/alice/secret/{PROJECT}" in r.text and "Zanzibarquux" in r.text


@pytest.mark.parametrize("who", WHO)
def test_used_by_leaves_it_out(site, who):
    path = "/alice/open/publiclib"
    r = get(site, path, auth=WHO[who])
    assert r.status_code == 200 and "Openly shared helpers" in get(site, "/alice/open/publiclib/1.0").text
    assert_nothing_of_secret(r, path)
    assert PROJECT in get(site, path, auth=ALICE).text  # the reader sees who uses publiclib


# -- inheritance: a public index on a private base --------------------------------------------
@pytest.mark.parametrize("who", WHO)
def test_public_index_on_private_base_shows_nothing_of_the_base(site, who):
    auth = WHO[who]
    r = get(site, "/alice/open", auth=auth)
    assert r.status_code == 200 and "publiclib" in r.text
    assert "alice/secret" not in r.text
    assert_nothing_of_secret(r, "/alice/open")
    missing = get(site, "/alice/open/nosuchproject", auth=auth)
    for path in (f"/alice/open/{PROJECT}", f"/alice/open/{PROJECT}/{VERSION}",
                 f"/alice/open/{PROJECT}/{VERSION}/+doc/index.html", f"/alice/open/{PROJECT}/+doc/latest/"):
        r = get(site, path, auth=auth)
        assert r.status_code == missing.status_code == 404, (path, r.status_code)
        assert_nothing_of_secret(r, path)


def test_reader_sees_the_base_through_the_public_index(site):
    r = get(site, "/alice/open", auth=ALICE)
    assert "alice/secret" in r.text
    r = get(site, f"/alice/open/{PROJECT}/{VERSION}", auth=ALICE)
    assert r.status_code == 200 and "xylophonic" in r.text and FILENAME in r.text


# -- cached pages and changes of acl_read -------------------------------------------------------
@pytest.mark.parametrize("who", WHO)
def test_cached_pages_still_refuse(site, who):
    """alice fills the page cache (twice: the second answer is the cached one); the next
    visitor is checked before any cached page is served."""
    for path in ("/alice/secret", "/alice/open"):
        first, second = get(site, path, auth=ALICE).text, get(site, path, auth=ALICE).text
        assert first == second and "alice/secret" in first
    assert_refused(site, "/alice/secret", who)
    assert_refused(site, "/alice/secret", who)
    r = get(site, "/alice/open", auth=WHO[who])
    assert r.status_code == 200 and "alice/secret" not in r.text


def test_changing_acl_read_takes_effect_at_once(site):
    srv = site["srv"]
    alice = srv.login(*ALICE)
    srv.create_index(alice, "flip")
    upload(srv, "alice/flip", "flippkg", "1.0", summary="Wombatwise flipping")
    for _ in range(2):  # filled into the page cache as a public page
        assert get(site, "/alice/flip").status_code == 200
    assert "alice/flip/flippkg" in get(site, "/+search?q=wombatwise").text

    r = srv.api("PATCH", "/alice/flip", json={"acl_read": ["alice"]}, auth=alice)
    assert r.status_code == 200, r.text
    for path in ("/alice/flip", "/alice/flip/flippkg", "/alice/flip/flippkg/1.0"):
        assert_refused(site, path, "anonymous")
        assert_refused(site, path, "bob")
    r = get(site, "/+search?q=wombatwise")
    assert "flippkg" not in r.text and "Wombatwise" not in r.text
    assert "alice/flip" not in get(site, "/alice").text
    assert get(site, "/alice/flip", auth=ALICE).status_code == 200

    r = srv.api("PATCH", "/alice/flip", json={"acl_read": ["bob"]}, auth=alice)
    assert r.status_code == 200, r.text
    assert get(site, "/alice/flip/flippkg/1.0", auth=BOB).status_code == 200
    assert_refused(site, "/alice/flip", "anonymous")

    r = srv.api("PATCH", "/alice/flip", json={"acl_read": [":ANONYMOUS:"]}, auth=alice)
    assert r.status_code == 200, r.text
    assert get(site, "/alice/flip/flippkg").status_code == 200
    assert "alice/flip/flippkg" in get(site, "/+search?q=wombatwise").text


def test_no_page_names_the_restricted_project_to_a_non_reader(site):
    """A sweep over every page a non-reader can reach from the listings: none names it."""
    seen: set[str] = set()
    todo = ["/", "/alice", "/alice/open", "/+search?q=helper"]
    while todo and len(seen) < 60:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = get(site, path, auth=BOB)
        if not r.headers.get("Content-Type", "").startswith("text/html"):
            continue
        assert_nothing_of_secret(r, path)
        for href in re.findall(r'href="(/[^"#?]*)"', r.text):
            if href.startswith("/alice") and "+f/" not in href and "+static" not in href:
                todo.append(href)
    assert "/alice/open/publiclib" in seen


def test_signin_page_challenges_until_credentials_come(site):
    """/+signin is the web UI's login: a challenge at the root, so a browser then sends the
    credentials with every page; signed in, it leads home, where alice/secret is listed."""
    r = get(site, "/+signin", allow_redirects=False)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="devpi"'
    assert r.headers["Content-Type"].startswith("text/html")
    r = get(site, "/+signin", auth=("alice", "wrong"), allow_redirects=False)
    assert r.status_code == 401 and "authentication failed" in r.text
    r = get(site, "/+signin", auth=ALICE, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/")
    assert "alice/secret" in get(site, "/", auth=ALICE).text
    assert "/+signin" in get(site, "/").text
