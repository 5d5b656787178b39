"""Each hook of server/hooks.py, driven over HTTP against the real server with a test plugin
(sample_plugin.py) registered by module name; and plugins that fail (broken_plugin.py, an
entry point that cannot be imported) leaving the server working."""
from __future__ import annotations

import os
import time
from pathlib import Path

import requests
from plugin_helpers import make_env
from support.dists import write_wheel

BROWSER = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}


def _stage(s, tmp_path, user="alice", index="dev", **config):
    auth = s.create_user(user, "pw")
    s.create_index(auth, index, **config)
    return auth


def _events(s, n: int, timeout: float = 15) -> list:
    deadline = time.monotonic() + timeout
    while True:
        events = s.api("GET", "/+sample").json()["events"]
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_options_routes_and_events(plugin_server, tmp_path):
    s = plugin_server("sample_plugin", args=("--sample-greeting", "good day"))
    assert s.api("GET", "/+sample").json() == {"greeting": "good day", "events": []}
    auth = _stage(s, tmp_path)
    s.create_index(auth, "prod")
    r = s.upload("alice/dev", write_wheel(tmp_path, "evt", "1.0"), auth)
    assert r.status_code == 200, r.text
    r = s.api("PUSH", "/alice/dev", json={"name": "evt", "version": "1.0", "targetindex": "alice/prod"}, auth=auth)
    assert r.status_code == 200, r.text
    r = s.api("DELETE", "/alice/dev/evt/1.0", auth=auth)
    assert r.status_code == 200, r.text
    events = _events(s, 5)
    kinds = [e[0] for e in events]
    assert kinds == ["upload", "upload", "push", "delete", "delete"], events
    upload, copied, push, delete, gone = events
    assert upload[2:] == ["alice/dev", "evt", "1.0", "evt-1.0-py3-none-any.whl", "releasefile"]
    assert copied[2:] == ["alice/prod", "evt", "1.0", "evt-1.0-py3-none-any.whl", "releasefile"]
    assert push[2:] == ["alice/dev", "evt", "1.0", "alice/prod"]
    assert push[1] == copied[1] and upload[1] < copied[1] < delete[1]  # the serials of their commits
    assert delete[1:] == [gone[1], "alice/dev", "evt", "1.0", None]  # the release, its project with it
    assert gone[2:] == ["alice/dev", "evt", None, None]
    r = s.api("GET", "/+status")
    assert r.headers["X-Sample-Plugin"] == "seen"  # its middleware
    assert r.json()["result"]["plugins"]["loaded"] == [{"name": "sample_plugin", "dist": "", "version": ""}]
    assert "route GET /+status of sample_plugin would replace the server's own: ignored" in s.log_text()


def test_testrun_finished_event(plugin_server, tmp_path):
    s = plugin_server("sample_plugin")
    auth = _stage(s, tmp_path)
    assert s.upload("alice/dev", write_wheel(tmp_path, "tested", "1.0"), auth).status_code == 200
    href = s.api("GET", "/alice/dev/tested").json()["result"]["1.0"]["+links"][0]["href"]
    r = s.api("POST", "/alice/dev/+testruns", auth=auth,
              json={"file": href, "host": "h", "platform": "linux", "python": "3.12.1"})
    assert r.status_code == 201, r.text
    run = r.json()["result"]
    r = s.api("POST", f"/alice/dev/+testruns/{run['id']}/finish", json={"key": run["key"], "exitcode": 1})
    assert r.status_code == 200, r.text
    finished = [e for e in _events(s, 3) if e[0] == "testrun"]
    assert [e[2:] for e in finished] == [["alice/dev", run["id"], "error"]]  # no report: an error
    assert finished[0][1] == int(s.api("GET", "/+api").headers["X-Devpi-Serial"])  # the last commit


def test_no_hook_call_on_cached_simple_pages(plugin_server, tmp_path):
    """The cached simple-page path (server/http/cached_page_lane.py, repos/simple_page_cache.py) asks no plugin."""
    s = plugin_server("sample_plugin")
    auth = _stage(s, tmp_path)
    assert s.upload("alice/dev", write_wheel(tmp_path, "hot", "1.0"), auth).status_code == 200
    _events(s, 1)
    pip = {"User-Agent": "pip/24.0", "Accept": "application/vnd.pypi.simple.v1+json"}
    first = requests.get(s.url + "/alice/dev/+simple/hot/", headers=pip, timeout=30)
    assert first.status_code == 200
    before = s.api("GET", "/+sample/calls").json()["n"]
    assert before > 0  # the counter counts: the start-up and the upload called hooks
    for _ in range(30):
        r = requests.get(s.url + "/alice/dev/+simple/hot/", headers=pip, timeout=30)
        assert r.content == first.content
    assert s.api("GET", "/+sample/calls").json()["n"] == before


def test_index_config_keys_and_types(plugin_server, tmp_path):
    s = plugin_server("sample_plugin")
    auth = s.create_user("alice", "pw")
    assert s.create_index(auth, "dev", ticket="T-7")["ticket"] == "T-7"
    r = s.api("PUT", "/alice/bad", json={"ticket": "nope"}, auth=auth)
    assert r.status_code == 400
    assert "a ticket looks like T-123" in r.json()["message"]
    r = s.api("PATCH", "/alice/dev", json=["ticket=x"], auth=auth)
    assert r.status_code == 400, r.text
    notes = s.create_index(auth, "notes", type="notes")
    assert notes["type"] == "notes" and notes["topic"] == "alice's"
    r = s.api("PUT", "/alice/notes2", json={"type": "notes", "bases": ["alice/dev"]}, auth=auth)
    assert r.status_code == 400  # a stage's key on another type
    assert s.api("GET", "/alice/notes/+simple/").status_code == 200
    r = s.api("PUT", "/alice/odd", json={"type": "unheard-of"}, auth=auth)
    assert r.status_code == 400


def test_an_index_type_named_twice_refuses_the_start(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DEVPI_SERVER_PLUGINS": "sample_plugin", "PYTHONPATH": str(Path(__file__).parent),
           "SAMPLE_INDEX_TYPE": "stage"}
    done = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "s"), "--port", "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "devpi server: index type 'stage' is registered twice" in done.stderr.splitlines()
    assert "Traceback" not in done.stderr


def test_authentication_hooks(plugin_server, tmp_path):
    s = plugin_server("sample_plugin")
    auth = _stage(s, tmp_path, acl_upload=["alice", ":team"])
    r = s.api("GET", "/+api", auth=("ext", "outside"))
    assert r.json()["result"]["authstatus"] == ["ok", "ext", ["team", "everyone"]]
    assert s.api("GET", "/+api", auth=("ext", "wrong")).json()["result"]["authstatus"][0] == "noauth"
    assert s.api("GET", "/+api", auth=auth).json()["result"]["authstatus"] == ["ok", "alice", ["everyone"]]
    r = s.upload("alice/dev", write_wheel(tmp_path, "ext-made", "1.0"), ("ext", "outside"))
    assert r.status_code == 200, r.text
    r = s.upload("alice/dev", write_wheel(tmp_path, "ext-made", "1.1"), ("ext", "wrong"))
    assert r.status_code in (401, 403), r.text
    # devpi login: a token for a user only the plugin knows, good for later requests
    user, token = s.login("ext", "outside")
    assert s.api("GET", "/+api", auth=(user, token)).json()["result"]["authstatus"] == ["ok", "ext", ["everyone"]]
    assert s.api("POST", "/+login", json={"user": "ext", "password": "wrong"}).status_code == 401
    assert s.api("GET", "/+api", auth=("nobody", token)).json()["result"]["authstatus"][0] == "noauth"


def test_blob_store_from_a_plugin(plugin_server, tmp_path):
    root = tmp_path / "elsewhere"
    s = plugin_server("sample_plugin", args=("--blob-storage", f"sample://{root}"))
    auth = _stage(s, tmp_path)
    r = s.upload("alice/dev", write_wheel(tmp_path, "blobbed", "1.0"), auth)
    assert r.status_code == 200, r.text
    stored = [p for p in root.rglob("*") if p.is_file() and p.read_bytes()[:2] == b"PK"]
    assert len(stored) == 1
    link = s.api("GET", "/alice/dev/blobbed").json()["result"]["1.0"]["+links"][0]["href"]
    assert requests.get(link, timeout=30).content == stored[0].read_bytes()


def test_blob_storage_no_plugin_owns_refuses_start(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "devpi.server", "--serverdir", str(tmp_path / "s"), "--port", "0",
                           "--blob-storage", "gcs://bucket/x"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "devpi server: no plugin provides blob storage for 'gcs' URLs (--blob-storage gcs://bucket/x)" \
        in done.stderr.splitlines()
    assert "Traceback" not in done.stderr


def test_page_extras(plugin_server, tmp_path):
    s = plugin_server("sample_plugin")
    auth = _stage(s, tmp_path)
    assert s.upload("alice/dev", write_wheel(tmp_path, "shown", "1.0"), auth).status_code == 200
    page = requests.get(s.url + "/alice/dev/shown", headers=BROWSER, timeout=30).text
    assert '<p id="sample-extra">extra for shown on alice/dev</p>' in page
    page = requests.get(s.url + "/alice/dev/shown/1.0", headers=BROWSER, timeout=30).text
    assert '<p id="sample-version-extra">shown 1.0</p>' in page


def test_a_failing_plugin_leaves_requests_served(plugin_server, tmp_path):
    s = plugin_server("broken_plugin", "sample_plugin")
    auth = _stage(s, tmp_path)
    s.create_index(auth, "prod")
    assert s.upload("alice/dev", write_wheel(tmp_path, "robust", "1.0"), auth).status_code == 200
    r = s.api("PUSH", "/alice/dev", json={"name": "robust", "version": "1.0", "targetindex": "alice/prod"},
              auth=auth)
    assert r.status_code == 200, r.text
    assert s.api("GET", "/+api", auth=auth).json()["result"]["authstatus"] == ["ok", "alice", ["everyone"]]
    page = requests.get(s.url + "/alice/dev/robust", headers=BROWSER, timeout=30)
    assert page.status_code == 200 and 'id="sample-extra"' in page.text
    assert [e[0] for e in _events(s, 3)] == ["upload", "upload", "push"]  # the other plugin's events flow
    log = s.log_text()
    for hook in ("devpiserver_configure", "devpiserver_add_routes", "devpiserver_wsgi_middleware",
                 "devpiserver_auth_password", "devpiserver_auth_groups", "devpiserver_check_push",
                 "devpiserver_on_upload", "devpiserver_web_project_extras"):
        assert f"plugin broken_plugin failed in {hook} (ignored)" in log, hook
    assert "PluginBug: upload event" in log  # with the traceback
    assert s.stop() == 0
    assert "plugin broken_plugin failed in devpiserver_shutdown (ignored)" in s.log_text()


def test_an_entry_point_that_cannot_load_is_skipped(env_servers, tmp_path):
    python = make_env(tmp_path / "env")
    site = next((tmp_path / "env" / "lib").glob("python3*/site-packages"))
    info = site / "ghost_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[devpi_server]\nghost = ghost_plugin_that_is_not_there\n")
    s = env_servers(python)
    failed = s.api("GET", "/+status").json()["result"]["plugins"]["failed"]
    assert [(f["name"], f["dist"], f["version"]) for f in failed] == [("ghost", "ghost-plugin", "1.0")]
    assert failed[0]["error"].startswith("ModuleNotFoundError")
    assert ("plugin ghost (ghost-plugin 1.0) not loaded: ModuleNotFoundError: No module named "
            "'ghost_plugin_that_is_not_there'") in s.log_text()
    assert s.api("GET", "/+api").status_code == 200
    assert Path(s.serverdir).exists()


def test_a_failing_push_copy_rolls_the_push_back(plugin_server, tmp_path):
    """on_push_copy writes inside the push's transaction: when a plugin's copy step raises, the
    push answers a JSON error naming the plugin and the target holds nothing of the release."""
    s = plugin_server("copy_failing_plugin")
    auth = _stage(s, tmp_path)
    s.create_index(auth, "prod")
    assert s.upload("alice/dev", write_wheel(tmp_path, "halfway", "1.0"), auth).status_code == 200
    r = s.api("PUSH", "/alice/dev", json={"name": "halfway", "version": "1.0", "targetindex": "alice/prod"},
              auth=auth)
    assert r.status_code == 500 and "copy_failing_plugin" in r.json()["message"], r.text
    assert s.api("GET", "/alice/prod/halfway", auth=auth).status_code == 404
    assert "plugin copy_failing_plugin failed in devpiserver_on_push_copy (the write was rolled back)" \
        in s.log_text()


def test_a_plugin_failing_while_the_command_line_is_parsed_is_one_line(tmp_path):
    """Before logging is set up, a plugin's failure is still one readable line, no traceback."""
    import subprocess
    import sys

    from plugin_helpers import HERE

    env = {**os.environ, "DEVPI_SERVER_PLUGINS": "broken_plugin", "PYTHONPATH": str(HERE)}
    p = subprocess.run([sys.executable, "-m", "devpi.server", "--version"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    assert "plugin broken_plugin failed in devpiserver_add_parser_options (ignored): PluginBug: options" \
        in p.stderr
