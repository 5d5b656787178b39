"""The basics every other test relies on: start, discovery, login, upload, simple page."""
from support.dists import write_wheel


def test_start_api_login_upload_simple(any_server, tmp_path):
    s = any_server
    r = s.api("GET", "/+api")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.headers["X-Devpi-Api-Version"] == "2"
    alice = s.create_user("alice", "secret")
    s.create_index(alice, "dev")
    wheel = write_wheel(tmp_path, "hello-dv", "1.0")
    r = s.upload("alice/dev", wheel, ("alice", "secret"))
    assert r.status_code == 200, r.text
    r = s.api("GET", "/alice/dev/+simple/hello-dv/",
              headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert r.status_code == 200
    files = r.json()["files"]
    assert [f["filename"] for f in files] == [wheel.name]
