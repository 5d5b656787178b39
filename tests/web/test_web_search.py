"""Search and "used by" on SQLite (FTS5) and PostgreSQL (tsvector + GIN): kept current, rebuilt at start."""
from __future__ import annotations

import re
import sqlite3

import pytest
import requests
from support.dists import write_wheel
from webdata import BROWSER_HEADERS


def search(server, q: str) -> list[tuple[str, str]]:
    """(index, project) of the hits, best first."""
    r = requests.get(server.url + "/+search", params={"q": q}, headers=BROWSER_HEADERS, timeout=30)
    assert r.status_code == 200
    return re.findall(r'<a class="strong" href="/(\w+/\w+)/([\w.-]+)">', r.text)


def used_by(server, index: str, project: str) -> list[str]:
    r = requests.get(f"{server.url}/{index}/{project}", headers=BROWSER_HEADERS, timeout=30)
    assert r.status_code == 200
    section = r.text.split('id="used-by"', 1)[1].split("</section>", 1)[0]
    return re.findall(r">([\w.-]+ [\w.]+)</a> <span class=\"muted\">on ([\w/]+)<", section)


@pytest.mark.postgresql
def test_search_follows_uploads_and_deletes(any_server, tmp_path):
    s = any_server
    alice = s.create_user("alice", "pw")
    s.create_index(alice, "dev", bases=[])
    s.create_index(alice, "other", bases=[])
    auth = ("alice", "pw")
    uploads = [
        ("alice/dev", "zebra-tools", "1.0", "Stripes for everyone", "Draws **stripes** on anything.", []),
        ("alice/dev", "stripe-lib", "2.0", "A library", "Nothing about animals here.", ["zebra-tools>=1"]),
        ("alice/other", "zebra-tools", "0.5", "Old stripes", "An older copy of the same.", []),
        ("alice/other", "unrelated", "1.0", "Other things", "Mentions zebra once, deep in the text.",
         ["Zebra_Tools; extra == 'fun'"]),
    ]
    for index, name, version, summary, description, deps in uploads:
        wheel = write_wheel(tmp_path, name, version, summary=summary, description=description,
                            description_content_type="text/markdown", requires_dist=deps)
        assert s.upload(index, wheel, auth).status_code == 200
    r = requests.get(s.url + "/alice/dev", headers=BROWSER_HEADERS, timeout=30)  # summaries read in SQL
    assert r.status_code == 200 and "Stripes for everyone" in r.text and "A library" in r.text
    r = requests.get(s.url + "/alice/dev/zebra-tools/1.0", headers=BROWSER_HEADERS, timeout=30)
    assert r.status_code == 200 and "<strong>stripes</strong>" in r.text
    hits = search(s, "zebra")
    assert set(hits) == {("alice/dev", "zebra-tools"), ("alice/other", "zebra-tools"), ("alice/other", "unrelated")}
    assert hits[-1] == ("alice/other", "unrelated")  # a name match ranks above a mention in the text
    hits = search(s, "stripes")  # stemmed: the name stripe-lib is the best match, then the summaries
    assert hits[0] == ("alice/dev", "stripe-lib")
    assert set(hits[1:]) == {("alice/dev", "zebra-tools"), ("alice/other", "zebra-tools")}
    assert search(s, "strip") != []  # prefixes match
    assert set(used_by(s, "alice/dev", "zebra-tools")) == {("stripe-lib 2.0", "alice/dev"),
                                                            ("unrelated 1.0", "alice/other")}
    # a newer release replaces what is indexed
    wheel = write_wheel(tmp_path, "unrelated", "2.0", summary="Other things", description="No animals now.")
    assert s.upload("alice/other", wheel, auth).status_code == 200
    assert ("alice/other", "unrelated") not in search(s, "zebra")
    assert used_by(s, "alice/dev", "zebra-tools") == [("stripe-lib 2.0", "alice/dev")]
    # deleting a project and an index removes their hits
    token = s.login("alice", "pw")
    assert s.api("DELETE", "/alice/dev/stripe-lib", auth=token).status_code == 200
    assert used_by(s, "alice/dev", "zebra-tools") == []
    assert s.api("DELETE", "/alice/other", auth=token).status_code in (200, 201)
    assert search(s, "zebra") == [("alice/dev", "zebra-tools")]


def test_search_index_is_rebuilt_or_caught_up_at_start(make_server, tmp_path):
    s = make_server()
    alice = s.create_user("alice", "pw")
    s.create_index(alice, "dev", bases=[])
    for name in ("first-thing", "second-thing"):
        wheel = write_wheel(tmp_path, name, "1.0", summary=f"{name} summary", description="marsupial")
        assert s.upload("alice/dev", wheel, ("alice", "pw")).status_code == 200
    assert len(search(s, "marsupial")) == 2
    db = s.serverdir / "devpi.sqlite"

    # missing entirely: rebuilt from the catalog
    s.stop()
    with sqlite3.connect(db) as conn:
        for table in ("web_fts", "web_docs", "web_deps", "web_state"):
            conn.execute(f"DROP TABLE {table}")
    s.start()
    assert len(search(s, "marsupial")) == 2

    # behind (changes made while it was not listening): caught up from the changelog
    s.stop()
    with sqlite3.connect(db) as conn:
        serial = int(conn.execute("SELECT value FROM web_state WHERE key = 'serial'").fetchone()[0])
        conn.execute("DELETE FROM web_fts")
        conn.execute("DELETE FROM web_docs")
        conn.execute("UPDATE web_state SET value = ? WHERE key = 'serial'", (str(serial - 1),))
    s.start()
    assert search(s, "marsupial") == [("alice/dev", "second-thing")]  # only the last serial replayed
    assert s.log_text().count("search index rebuilt") == 2  # first start and the dropped tables, not now


def test_search_indexes_the_newest_version_whatever_the_upload_order(server, tmp_path):
    """Uploads update the indexed newest release incrementally; a delete of it rescans."""
    alice = server.create_user("alice", "pw")
    server.create_index(alice, "dev", bases=[])
    auth = ("alice", "pw")
    for version, word in (("1.0", "alphaword"), ("3.0", "gammaword"), ("2.0", "betaword")):
        wheel = write_wheel(tmp_path, "ordered", version, summary=word, description=word)
        assert server.upload("alice/dev", wheel, auth).status_code == 200
    assert search(server, "gammaword") == [("alice/dev", "ordered")]
    assert search(server, "betaword") == []  # 2.0 came later but is older than 3.0
    r = server.api("DELETE", "/alice/dev/ordered/3.0", auth=server.login("alice", "pw"))
    assert r.status_code == 200, r.text
    assert search(server, "betaword") == [("alice/dev", "ordered")]
    assert search(server, "gammaword") == []
