"""Web pages under input made to hurt: names that begin like other segments, proxies,
pathological descriptions, marker bytes in search text, doc zips with ``./`` entries."""
from __future__ import annotations

import io
import re
import time
import zipfile

import requests
from support.dists import write_wheel
from webdata import BROWSER_HEADERS, upload_docs

OUTSIDE = "https://pkgs.example.invalid/devpi"


def _submit(server, index: str, auth: tuple[str, str], name: str, **fields) -> None:
    r = requests.post(f"{server.url}/{index}/", auth=auth, timeout=60,
                      data={":action": "submit", "name": name, "version": "1.0", **fields})
    assert r.status_code == 200, r.text


def test_a_name_is_normalised_in_its_own_segment_only(web_server):
    s = web_server
    user = "Odd_Namex"  # begins with "/Odd_Name", the project's spelling
    auth = s.create_user(user, "pw")
    s.create_index(auth, "dev")
    _submit(s, f"{user}/dev", (user, "pw"), "Odd_Name")
    for headers in (BROWSER_HEADERS, {"Accept": "application/json"}):
        for path, target in ((f"/{user}/dev/Odd_Name", f"/{user}/dev/odd-name"),
                             (f"/{user}/dev/Odd_Name/1.0", f"/{user}/dev/odd-name/1.0")):
            r = requests.get(s.url + path, headers=headers, timeout=30, allow_redirects=False)
            assert r.status_code == 302 and r.headers["Location"] == s.url + target, (path, r.headers)
            assert requests.get(s.url + path, headers=headers, timeout=30).status_code == 200


def test_redirects_keep_the_outside_url(web_server):
    headers = {**BROWSER_HEADERS, "X-Outside-Url": OUTSIDE}
    for path, target in (("/alice/dev/Helper_Lib", "/alice/dev/helper-lib"),
                         ("/alice/dev/frobnicator/2.0/+doc", "/alice/dev/frobnicator/2.0/+doc/"),
                         ("/alice/dev/frobnicator/2.0/+doc/guide", "/alice/dev/frobnicator/2.0/+doc/guide/"),
                         ("/alice/dev/frobnicator/+doc/latest", "/alice/dev/frobnicator/+doc/latest/")):
        r = requests.get(web_server.url + path, headers=headers, timeout=30, allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"] == OUTSIDE + target, (path, r.headers)


def test_deeply_nested_markdown_is_shown_as_text(web_server):
    s = web_server
    auth = s.login("alice", "secret")
    s.create_index(auth, "deep")
    _submit(s, "alice/deep", ("alice", "secret"), "deep-md", description=">" * 50000 + " deep end",
            description_content_type="text/markdown")
    _submit(s, "alice/deep", ("alice", "secret"), "shallow-md", description="> quoted *once*",
            description_content_type="text/markdown")
    html = requests.get(s.url + "/alice/deep/deep-md/1.0", headers=BROWSER_HEADERS, timeout=60).text
    assert '<pre class="plain">&gt;&gt;&gt;' in html and "deep end" in html
    html = requests.get(s.url + "/alice/deep/shallow-md/1.0", headers=BROWSER_HEADERS, timeout=60).text
    assert "<blockquote>" in html and "<em>once</em>" in html


def test_search_marks_stay_paired(web_server):
    s = web_server
    auth = s.login("alice", "secret")
    s.create_index(auth, "marks")
    _submit(s, "alice/marks", ("alice", "secret"), "marker-pkg", summary="zzqqmark tool",
            description="\x02\x02\x02 zzqqmark here <b>bold</b> \x03\x03\x03\x03 and zzqqmark again \x02")
    r = requests.get(s.url + "/+search", params={"q": "zzqqmark"}, headers=BROWSER_HEADERS, timeout=30)
    assert r.status_code == 200 and "marker-pkg" in r.text
    assert r.text.count("<mark>") == r.text.count("</mark>") > 0
    assert "<b>bold" not in r.text


def test_doc_zip_entries_with_dot_segments_are_served(web_server):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("./index.html", "<h1>dot index</h1>")
        zf.writestr("a/./b.html", "<h1>dot b</h1>")
    s = web_server
    auth = s.login("alice", "secret")
    s.create_index(auth, "dots")
    _submit(s, "alice/dots", ("alice", "secret"), "dot-docs")
    assert upload_docs(s, "alice/dots", "dot-docs", "1.0", buf.getvalue()).status_code == 200
    for path, text in (("+doc/", "dot index"), ("+doc/index.html", "dot index"), ("+doc/a/b.html", "dot b")):
        r = requests.get(f"{s.url}/alice/dots/dot-docs/1.0/{path}", timeout=30)
        assert r.status_code == 200 and text in r.text, (path, r.status_code)


def test_highlight_pairs_marks_whatever_the_text_holds():
    from devpi.web.render import highlight

    out = str(highlight("\x02\x02 hit \x03\x03\x03 <b>x</b> \x03 tail \x02open"))
    assert " ".join(out.split()) == "<mark> hit </mark> &lt;b&gt;x&lt;/b&gt; tail <mark>open</mark>"


def _latest_on_index_page(server, index: str, project: str) -> str:
    html = requests.get(f"{server.url}/{index}", headers=BROWSER_HEADERS, timeout=30).text
    found = re.search(rf'href="/{index}/{project}">{project}</a>.*?<td>.*?href="/{index}/{project}/([^"]+)"',
                      html, re.S)
    assert found, html
    return found.group(1)


def _eventually_latest(server, index: str, project: str, version: str) -> None:
    deadline = time.monotonic() + 20  # the index table is derived by a background worker
    while (shown := _latest_on_index_page(server, index, project)) != version and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shown == version


def test_the_index_page_s_latest_version_skips_yanked_releases(web_server, tmp_path):
    s = web_server
    auth = s.create_user("yanker", "pw")
    s.create_index(auth, "dev")
    for version in ("1.0", "2.0"):
        assert s.upload("yanker/dev", write_wheel(tmp_path, "yankee", version), auth).status_code == 200
    _eventually_latest(s, "yanker/dev", "yankee", "2.0")
    r = requests.post(f"{s.url}/yanker/dev/yankee/2.0/+yank", auth=auth, json={"reason": "broken"}, timeout=30)
    assert r.status_code == 200, r.text
    _eventually_latest(s, "yanker/dev", "yankee", "1.0")
    r = requests.post(f"{s.url}/yanker/dev/yankee/1.0/+yank", auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    _eventually_latest(s, "yanker/dev", "yankee", "2.0")  # all yanked: the newest is still the one shown
    r = requests.post(f"{s.url}/yanker/dev/yankee/2.0/+unyank", auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    _eventually_latest(s, "yanker/dev", "yankee", "2.0")
    assert s.upload("yanker/dev", write_wheel(tmp_path, "yankee", "0.5"), auth).status_code == 200
    _eventually_latest(s, "yanker/dev", "yankee", "2.0")
