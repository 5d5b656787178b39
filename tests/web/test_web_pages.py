"""The HTML pages over HTTP: content negotiation, what each page shows, errors, docs, headers."""
from __future__ import annotations

import http.client
import re
from html import unescape

import pytest
import requests
from webdata import BROWSER_HEADERS

INSTALLER = {"User-Agent": "pip/24.0 {\"installer\":{\"name\":\"pip\"}}",
             "Accept": "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
                       "text/html; q=0.01"}


def get_html(server, path: str, status: int = 200) -> str:
    r = requests.get(server.url + path, headers=BROWSER_HEADERS, timeout=30)
    assert r.status_code == status, (path, r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("text/html")
    return r.text


def text_of(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


@pytest.mark.parametrize("path", ["/", "/alice", "/alice/dev", "/alice/dev/frobnicator",
                                  "/alice/dev/frobnicator/2.0"])
def test_same_url_html_for_browsers_json_for_clients(web_server, path):
    html = get_html(web_server, path)
    assert '<form class="search"' in html  # the search box is on every page
    r = requests.get(web_server.url + path, headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    r = requests.get(web_server.url + path, headers={"Accept": "*/*"}, timeout=30)  # curl's default
    assert r.headers["Content-Type"] == "application/json"


def test_installers_never_get_pages(web_server):
    r = requests.get(web_server.url + "/alice/dev/frobnicator", headers=INSTALLER, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
    assert {f["filename"] for f in r.json()["files"]} >= {"frobnicator-2.0.tar.gz"}


def test_pages_send_security_headers(web_server):
    r = requests.get(web_server.url + "/alice/dev/frobnicator/2.0", headers=BROWSER_HEADERS, timeout=30)
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Accept" in r.headers["Vary"]


def test_home_and_user_pages_list_indexes(web_server):
    text = text_of(get_html(web_server, "/"))
    for name in ("root/pypi", "alice/dev", "alice/prod", "Work in progress"):
        assert name in text
    text = text_of(get_html(web_server, "/alice"))
    assert "alice/dev" in text and "Alice's team" in text


def test_index_page_shows_config_projects_and_uploads(web_server):
    html = get_html(web_server, "/alice/dev")
    text = text_of(html)
    assert "alice/dev → alice/prod → root/pypi" in text  # resolution order
    assert "Volatile yes" in text
    assert "frobnicator" in text and "Turns signals into frobs" in text
    assert 'href="/alice/dev/frobnicator/2.0"' in html  # latest version link
    assert "frobnicator-2.0.tar.gz" in text  # latest uploads
    assert "helper-lib" in text
    prod = text_of(get_html(web_server, "/alice/prod"))
    assert "Volatile no" in prod and "frobnicator" not in prod


def test_mirror_page_does_not_list_upstream(web_server):
    text = text_of(get_html(web_server, "/root/pypi"))
    assert "mirrors" in text and "Open a project" in text


def test_project_page_versions_newest_first_with_yanked_and_source(web_server):
    html = get_html(web_server, "/alice/dev/frobnicator")
    rows = re.findall(r'<tr( class="yanked")?>\s*<td><a class="strong" href="/alice/dev/frobnicator/([^"]+)"', html)
    assert [(bool(y), v) for y, v in rows] == [(False, "2.0"), (True, "1.0")]
    html = get_html(web_server, "/alice/dev/helper-lib")
    text = text_of(html)
    assert re.search(r"1\.0 alice/dev .*0\.9 alice/prod \(base\)", text), text
    assert "frobnicator 2.0 on alice/dev" in text  # used by


def test_project_name_is_normalised(web_server):
    r = requests.get(web_server.url + "/alice/dev/Helper_Lib", headers=BROWSER_HEADERS, timeout=30,
                     allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/alice/dev/helper-lib")


def test_version_page_shows_metadata_files_deps_and_tests(web_server):
    html = get_html(web_server, "/alice/dev/frobnicator/2.0")
    text = text_of(html)
    assert '<strong>quasiperiodic</strong>' in html  # markdown rendered
    assert "<table>" in html  # GFM table
    assert "Requires Python >=3.9" in text
    assert 'href="/alice/dev/helper-lib"' in html  # dependency links to its page here
    assert "sys_platform == &#34;win32&#34;" in html or 'sys_platform == "win32"' in text
    assert "License :: OSI Approved :: MIT License" in text
    assert 'href="https://example.invalid/frobnicator"' in html
    assert "javascript:" not in re.sub(r"<code>.*?</code>|<span class=\"muted\">.*?</span>", "", html)
    for ending in ("-py3-none-any.whl", ".tar.gz"):
        assert f"frobnicator-2.0{ending}" in text or f"frobnicator_2.0{ending}" in text
    assert re.search(r"[0-9a-f]{64}", html) and "KiB" in text or " B " in text
    assert "Read the documentation" in text
    assert re.search(r"py311 linux 3\.11\.7 ci-1 passed", text), text
    assert re.search(r"py312 linux 3\.12\.1 ci-2 failed", text), text
    assert f"/alice/dev/frobnicator/2.0/+toxresults/{web_server.sample['report_file']}#" in html


def test_yanked_version_page_says_so(web_server):
    text = text_of(get_html(web_server, "/alice/dev/frobnicator/1.0"))
    assert "This version is yanked: broken build" in text and "latest is 2.0" in text


def test_toxresult_page_lists_commands_and_output(web_server):
    basename = web_server.sample["report_file"]
    html = get_html(web_server, f"/alice/dev/frobnicator/2.0/+toxresults/{basename}")
    text = text_of(html)
    assert "python -m pytest -q" in text and "exit 1" in text and "exit 0" in text
    assert "AssertionError: frob mismatch" in text
    assert "ci-1" in text and "ci-2" in text
    assert re.search(r"<details class=\"command\" open>\s*<summary><span class=\"phase\">test", html)


def test_hosted_docs(web_server):
    r = requests.get(web_server.url + "/alice/dev/frobnicator/2.0/+doc/", timeout=30)  # any Accept
    assert r.status_code == 200 and "Frobnicator manual" in r.text
    assert "sandbox" in r.headers["Content-Security-Policy"]
    etag = r.headers["ETag"]
    r = requests.get(web_server.url + "/alice/dev/frobnicator/2.0/+doc/", headers={"If-None-Match": etag}, timeout=30)
    assert r.status_code == 304
    r = requests.get(web_server.url + "/alice/dev/frobnicator/2.0/+doc/_static/site.css", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/css")
    r = requests.get(web_server.url + "/alice/dev/frobnicator/2.0/+doc/guide", timeout=30, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/+doc/guide/")
    for alias in ("/alice/dev/frobnicator/latest/+doc/guide/", "/alice/dev/frobnicator/+doc/latest/guide/",
                  "/alice/dev/frobnicator/stable/+doc/guide/"):
        r = requests.get(web_server.url + alias, timeout=30)
        assert r.status_code == 200 and "The guide" in r.text, alias
    for bad in ("/alice/dev/frobnicator/2.0/+doc/../../../../../etc/passwd",
                "/alice/dev/frobnicator/2.0/+doc/%2e%2e/%2e%2e/x", "/alice/dev/frobnicator/2.0/+doc/guide/../index.html",
                "/alice/dev/frobnicator/2.0/+doc/nothing.html", "/alice/dev/helper-lib/1.0/+doc/"):
        conn = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=30)
        conn.request("GET", bad)  # sent as is: no client-side removal of dot segments
        assert conn.getresponse().status == 404, bad
        conn.close()


def test_unsafe_doc_zips_are_refused_at_upload(web_server, tmp_path):
    import io
    import zipfile

    from webdata import upload_docs

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.html", "x")
    r = upload_docs(web_server, "alice/dev", "helper-lib", "1.0", buf.getvalue())
    assert r.status_code == 400 and "outside" in r.json()["message"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link.html")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    r = upload_docs(web_server, "alice/dev", "helper-lib", "1.0", buf.getvalue())
    assert r.status_code == 400 and "link" in r.json()["message"]


def test_errors_are_html_for_browsers_and_json_for_clients(web_server):
    for path, status in (("/nobody", 404), ("/alice/nope", 404), ("/alice/dev/frobnicator/9.9", 404),
                         ("/alice/dev/+f/123/4567890123456/nothing.tar.gz", 404),
                         ("/alice/dev/not-here", 502)):  # asks the (unreachable) upstream
        r = requests.get(web_server.url + path, headers={"Accept": "application/json"}, timeout=30)
        assert r.status_code == status, (path, r.text)
        assert r.json()["message"]
        html = get_html(web_server, path, status)
        assert re.search(r'<p class="message">[^<]+</p>', html), path
    html = get_html(web_server, "/alice/dev/+f/123/4567890123456/nothing.tar.gz", 404)
    assert '<p class="message">no such file</p>' in html  # the API's own message, as a page


def test_error_message_is_escaped(web_server):
    html = get_html(web_server, "/alice/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404)
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_static_assets_for_any_client(web_server):
    r = requests.get(web_server.url + "/+static/style.css", timeout=30)
    assert r.status_code == 200 and "max-age" in r.headers["Cache-Control"]
    r = requests.get(web_server.url + "/+static/../server/app.py", timeout=30)
    assert r.status_code == 404


def test_search_ranks_and_names_the_index(web_server):
    html = get_html(web_server, "/+search?q=quasiperiodic")
    assert "<mark>quasiperiodic</mark>" in html
    assert re.search(r'href="/alice/dev/frobnicator">frobnicator</a>', html)
    html = get_html(web_server, "/+search?q=helper")
    hits = re.findall(r'<a class="strong" href="/(alice/\w+)/helper-lib">', html)
    assert sorted(hits) == ["alice/dev", "alice/prod"]  # one hit per index holding it
    # a name match outranks a description mention
    html = get_html(web_server, "/+search?q=frobnicator")
    first = re.search(r'<a class="strong" href="/alice/dev/([\w-]+)">', html).group(1)
    assert first == "frobnicator"
    assert "0 results" in text_of(get_html(web_server, "/+search?q=zzznotthere"))
    assert "0 results" in text_of(get_html(web_server, "/+search?q=%22%29%28*%3A"))  # FTS syntax is not passed on


def test_links_follow_the_outside_url_prefix(web_server):
    headers = {**BROWSER_HEADERS, "X-Outside-Url": "https://pkgs.example.invalid/devpi"}
    for path in ("/alice/dev", "/alice/dev/frobnicator/2.0"):
        html = requests.get(web_server.url + path, headers=headers, timeout=30).text
        hrefs = re.findall(r'href="([^"]+)"', html)
        ours = [h for h in hrefs if not h.startswith(("https://example.invalid", "#"))]
        assert ours and all(h.startswith("/devpi/") for h in ours), ours
        assert "pip install --index-url https://pkgs.example.invalid/devpi/alice/dev/+simple/" in html
