"""Mirror replication under attack: the primary's mirror routes (cache, page, file) without or
with a wrong secret, with bad parameters and path tricks; and a hostile primary whose mirror
cache rows have unknown columns, oversized values, path tricks or a wrong shape: refused with
nothing of the answer stored, the replica up, and /+status naming the problem."""
from __future__ import annotations

import json
import sqlite3
import urllib.parse

import pytest
import requests
from support.local_http import QuietHandler, serve
from support.replication import (
    REPLICA_HEADER,
    SECRET,
    primary_args,
    replica_args,
    status,
    wait_until,
    write_secret,
)

OK = {REPLICA_HEADER: SECRET}
MAX_ROWS = 500  # rows in one mirror cache answer (replication/mirror_feed.py)
ROUTES = ["/+replica/mirror-cache?table=pages", "/+replica/mirror/root/pypi/+page/up-lib",
          "/+replica/mirror/root/pypi/+file/+f/abc/def/up_lib-1.0-py3-none-any.whl"]


@pytest.fixture
def primary(make_server, upstream, tmp_path):
    upstream.add_wheel("up-lib", "1.0")
    return make_server(mirror_url=upstream.url, args=primary_args(write_secret(tmp_path)))


def _json_error(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_mirror_routes_need_the_secret(primary, upstream, make_server, route):
    upstream.reset_log()
    assert "secret" in _json_error(requests.get(primary.url + route, timeout=30), 401)
    assert "wrong" in _json_error(requests.get(primary.url + route, headers={REPLICA_HEADER: "x" * 40},
                                               timeout=30), 403)
    assert upstream.count() == 0  # nobody without the secret makes the primary fetch
    plain = make_server(mirror_url=upstream.url)
    assert _json_error(requests.get(plain.url + route, headers=OK, timeout=30), 404)


@pytest.mark.parametrize("query", [
    {"table": "users"}, {"table": "pages", "since": "nan"}, {"table": "pages", "since": "inf"},
    {"table": "pages", "since": "1" * 50}, {"table": "pages", "since": "0", "key": "[1]"},
    {"table": "pages", "since": "0", "key": '{"a": 1}'}, {"table": "files", "since": "0", "key": '["1", 2]'},
    {"table": "pages", "since": "0", "key": "[" + "1," * 2000 + "1]"},
])
def test_bad_cache_parameters_are_400(primary, query):
    _json_error(requests.get(primary.url + "/+replica/mirror-cache", params=query, headers=OK, timeout=30), 400)


@pytest.mark.parametrize("path, status", [
    ("/+replica/mirror/root/pypi/+page/" + "a" * 201, 400),
    ("/+replica/mirror/root/pypi/+page/a%23b", 400),
    ("/+replica/mirror/root/nosuch/+page/up-lib", 404),
    ("/+replica/mirror/root/pypi/+file/etc/passwd", 400),
    ("/+replica/mirror/root/pypi/+file/+f/%2e%2e/%2e%2e/etc/passwd", 400),
    ("/+replica/mirror/root/pypi/+file/+f/a//b.whl", 400),
    ("/+replica/mirror/root/pypi/+file/+f/" + "a/" * 400 + "x.whl", 400),
    ("/+replica/mirror/root/pypi/+file/+f/abc/def/not-on-any-page.whl", 404),
])
def test_page_and_file_path_tricks(primary, upstream, path, status):
    upstream.reset_log()
    _json_error(requests.get(primary.url + path, headers=OK, timeout=60), status)
    assert upstream.count("/files/") == 0


def test_the_cache_is_paged_by_time_and_key(primary, upstream):
    for name in ("a-lib", "b-lib", "c-lib"):
        upstream.add_wheel(name, "1.0")
        assert requests.get(f"{primary.url}/root/pypi/+simple/{name}/", timeout=60).status_code == 200

    def ask(**params):
        r = requests.get(primary.url + "/+replica/mirror-cache", params={"table": "pages", **params}, headers=OK,
                         timeout=30)
        assert r.status_code == 200, r.text
        return r.json()
    doc = wait_until(lambda: (d := ask(since="0"))["rows"] and len(d["rows"]) == 3 and d, what="3 pages stored")
    assert doc["more"] is False and doc["table"] == "pages"
    rows = doc["rows"]
    assert [r["project"] for r in rows] == ["a-lib", "b-lib", "c-lib"]
    assert all(set(r) == {"index_id", "project", "url", "links", "etag", "last_modified", "serial", "fetched"}
               for r in rows)
    first = rows[0]
    after = ask(since=repr(first["fetched"]), key=json.dumps([first["index_id"], first["project"]]))["rows"]
    assert [r["project"] for r in after] == ["b-lib", "c-lib"]
    assert ask(since=repr(rows[-1]["fetched"] + 1))["rows"] == []


# -- a hostile primary ---------------------------------------------------------------------------
class FakeMirrorPrimary:
    """The real primary's serials (so the replica has root/pypi), ``cache`` as the mirror cache
    answer for ``table`` (the other tables have no rows); page and file requests get 404."""

    def __init__(self, lines: bytes, uuid: str, serial: int, table: str, cache: bytes):
        self.lines, self.uuid, self.serial, self.table, self.cache = lines, uuid, serial, table, cache

    def __enter__(self) -> FakeMirrorPrimary:
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/+replica/changes":
                    body = fake.lines if int(query.get("since", "-1")) < 0 else b""
                elif url.path == "/+replica/mirror-cache":
                    table = query.get("table", "")
                    body = fake.cache if table == fake.table else _answer(table)
                else:
                    body = b'{"message": "no"}'
                    self.send_response(404)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("X-Devpi-Serial", str(fake.serial))
                self.send_header("X-Devpi-Uuid", fake.uuid)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = serve(Handler)
        self.url = self.server.url
        return self

    def __exit__(self, *exc) -> None:
        self.server.close()


def _good_page(index_id: int) -> dict:
    links = [{"filename": "evil_lib-1.0-py3-none-any.whl", "url": "http://127.0.0.1:9/evil_lib-1.0-py3-none-any.whl",
              "sha256": "a" * 64}]
    return {"index_id": index_id, "project": "evil-lib", "url": "http://127.0.0.1:9/simple/evil-lib/",
            "links": json.dumps(links), "etag": None, "last_modified": None, "serial": None, "fetched": 1.0}


def _good_file(index_id: int) -> dict:
    return {"index_id": index_id, "relpath": "+f/aaa/aaaaaaaaaaaaa/evil_lib-1.0-py3-none-any.whl",
            "project": "evil-lib", "filename": "evil_lib-1.0-py3-none-any.whl", "sha256": "a" * 64, "size": 3,
            "created": 1.0, "url": "http://127.0.0.1:9/evil_lib-1.0-py3-none-any.whl"}


def _answer(table: str, *rows: dict, **extra) -> bytes:
    return json.dumps({"table": table, "rows": list(rows), "more": False, **extra}).encode()


HOSTILE = {
    "unknown column": (lambda ix: _answer("pages", _good_page(ix), {**_good_page(ix), "is_admin": 1}),
                       "exactly the columns"),
    "oversized etag": (lambda ix: _answer("pages", _good_page(ix), {**_good_page(ix), "etag": "e" * 5000}),
                       "etag is not a text"),
    "not normalised": (lambda ix: _answer("pages", _good_page(ix), {**_good_page(ix), "project": "Evil..Lib"}),
                       "not a normalised project name"),
    "links not links": (lambda ix: _answer("pages", _good_page(ix), {**_good_page(ix), "links": '[{"x": 1}]'}),
                        "not {url, filename"),
    "relpath trick": (lambda ix: _answer("files", _good_file(ix),
                                         {**_good_file(ix), "relpath": "+f/../../evil_lib-1.0-py3-none-any.whl"}),
                      "not a mirror file path"),
    "sha256 not hex": (lambda ix: _answer("files", _good_file(ix), {**_good_file(ix), "sha256": "../" * 21 + "a"}),
                       "sha256 is not"),
    "wrong shape": (lambda ix: _answer("pages", _good_page(ix), evil=True), "not {table, rows, more}"),
    "not json": (lambda ix: b"{nope", "not JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_primarys_mirror_rows_are_refused(primary, make_server, tmp_path, case):
    r = requests.get(primary.url + "/+replica/changes", params={"since": -1, "wait": 0}, headers=OK, timeout=60)
    lines = r.content
    serial = max(json.loads(line)["serial"] for line in lines.splitlines())
    pypi_id = next(image["row"]["id"] for line in lines.splitlines() for image in json.loads(line)["rows"]
                   if image["t"] == "indexes" and image.get("row", {}).get("name") == "pypi")
    make, reason = HOSTILE[case]
    table = "files" if case in ("relpath trick", "sha256 not hex") else "pages"
    with FakeMirrorPrimary(lines, r.headers["X-Devpi-Uuid"], serial, table, make(pypi_id)) as fake:
        replica = make_server(args=replica_args(fake.url, write_secret(tmp_path)))
        error = wait_until(lambda: status(replica)["replication"]["mirrors"]["last_error"],
                           what="the replica reporting")
        assert reason in error and "refused from the primary" in error, error
        assert replica.proc.poll() is None
        with sqlite3.connect(replica.serverdir / "devpi.sqlite") as db:
            for table in ("mirror_pages", "mirror_files", "mirror_lists"):
                assert db.execute(f"select count(*) from {table}").fetchone()[0] == 0
        r = requests.get(replica.url + "/root/pypi/+simple/evil-lib/", timeout=30)
        assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json")


def test_a_cache_answer_is_bounded_and_the_rest_follows_by_key(primary, upstream):
    from concurrent.futures import ThreadPoolExecutor

    names = [f"bulk-{n:03d}" for n in range(MAX_ROWS + 1)]
    for name in names:
        upstream.add_wheel(name, "1.0")

    def fetch(name: str) -> int:
        return requests.get(f"{primary.url}/root/pypi/+simple/{name}/", timeout=60).status_code
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(fetch, names)) == {200}

    def ask(**params) -> dict:
        r = requests.get(primary.url + "/+replica/mirror-cache", params={"table": "pages", **params}, headers=OK,
                         timeout=60)
        assert r.status_code == 200, r.text
        return r.json()
    def both_answers():
        """The first answer and the rest after its last key, once every page is stored: the
        cache writer commits a moment after a page's time is taken, so a page may land
        behind the cursor of an answer taken earlier (the replica's sync asks the last 30 s
        again for that)."""
        first = ask(since="0")
        if not first["more"]:
            return None
        last = first["rows"][-1]
        rest = ask(since=repr(last["fetched"]), key=json.dumps([last["index_id"], last["project"]]))
        return (first, rest) if len(first["rows"]) + len(rest["rows"]) == len(names) else None
    first, rest = wait_until(both_answers, what="every page stored")
    assert len(first["rows"]) == MAX_ROWS
    assert rest["more"] is False
    assert sorted(r["project"] for r in first["rows"] + rest["rows"]) == names
