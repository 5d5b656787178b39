"""GET /+metrics: what real clients do shows up in the counters, by route template.

Each test drives a fresh server with real clients (requests, pip) and reads the scrape with
prometheus_client's own parser, comparing before and after: counters count exactly the
events the test caused.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from support.dists import wheel_bytes, write_sdist
from support.upstream import Upstream

DOC = Path(__file__).parents[2] / "doc" / "operations.md"
SIMPLE_PAGE = "/<user>/<index>/+simple/<project>/"


def scrape(s) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    r = requests.get(f"{s.url}/+metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(r.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def upload(s, index: str, auth, name: str, version: str = "1.0") -> bytes:
    filename, data = wheel_bytes(name, version)
    r = requests.post(f"{s.url}/{index}/", auth=auth, timeout=60, files={"content": (filename, data)},
                      data={":action": "file_upload", "name": name, "version": version})
    assert r.status_code == 200, r.text
    return data


def test_requests_page_cache_and_uploads_are_counted_by_template(server):
    auth = server.login("root", "root")
    assert server.api("PUT", "/root/mx", json={"type": "stage", "bases": []}, auth=auth).status_code == 200
    before = scrape(server)
    data = upload(server, "root/mx", auth, "metered")
    page = f"{server.url}/root/mx/+simple/metered/"
    for _ in range(3):  # a miss (rendered), then hits answered in the event loop
        assert requests.get(page, timeout=30).status_code == 200
    assert requests.get(f"{server.url}/root/mx/+simple/nothing-here/", timeout=30).status_code == 404
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("devpi_http_requests_total", route=SIMPLE_PAGE, method="GET", status="200") == 3
    assert delta("devpi_http_requests_total", route=SIMPLE_PAGE, method="GET", status="404") == 1
    assert delta("devpi_http_requests_total", route="/<user>/<index>/", method="POST", status="200") == 1
    assert delta("devpi_http_request_duration_seconds_count", route=SIMPLE_PAGE) == 4
    assert delta("devpi_simple_page_cache_requests_total", result="hit") == 2
    assert delta("devpi_simple_page_cache_requests_total", result="miss") == 2
    assert delta("devpi_uploads_total", kind="file") == 1
    assert delta("devpi_upload_bytes_total") == len(data)
    # the scrape itself is counted (by the next scrape)
    assert delta("devpi_http_requests_total", route="/+metrics", method="GET", status="200") == 1
    # names of users, indexes and projects are nowhere in the scrape
    text = requests.get(f"{server.url}/+metrics", timeout=30).text
    assert "metered" not in text and "root/mx" not in text and "nothing-here" not in text


def test_logins_failures_and_test_runs(server, tmp_path):
    before = scrape(server)
    auth = server.create_user("alice", "secret")  # one login
    assert server.api("POST", "/+login", json={"user": "alice", "password": "wrong"}).status_code == 401
    r = server.api("GET", "/+api", auth=("alice", "wrong"))  # any URL checks credentials sent
    assert r.json()["result"]["authstatus"][0] == "noauth"
    server.create_index(auth, "dev")
    r = server.upload("alice/dev", write_sdist(tmp_path, "runpkg", "1.0"), auth)
    assert r.status_code == 200, r.text
    href = server.api("GET", "/alice/dev/runpkg").json()["result"]["1.0"]["+links"][0]["href"]
    run = server.api("POST", "/alice/dev/+testruns", auth=auth, json={
        "file": href, "host": "h", "platform": "linux", "python": "3.12.1"}).json()["result"]
    r = server.api("POST", f"/alice/dev/+testruns/{run['id']}/finish",
                   json={"key": run["key"], "exitcode": None, "interrupted": True})
    assert r.status_code == 200, r.text
    after = scrape(server)
    assert value(after, "devpi_logins_total", result="ok") - value(before, "devpi_logins_total", result="ok") == 1
    assert value(after, "devpi_logins_total", result="failed") - value(before, "devpi_logins_total",
                                                                      result="failed") == 1
    assert value(after, "devpi_auth_failures_total") - value(before, "devpi_auth_failures_total") == 2
    assert value(after, "devpi_test_runs_total", status="interrupted") == 1
    assert value(after, "devpi_uploads_total", kind="file") == 1
    assert "alice" not in requests.get(f"{server.url}/+metrics", timeout=30).text


def test_upstream_fetches_errors_bytes_and_single_flight_waits(make_server, tmp_path):
    with Upstream() as up:
        _, data = wheel_bytes("farpkg", "1.0")
        up.add_file("farpkg", "farpkg-1.0-py3-none-any.whl", data)
        s = make_server(mirror_url=up.url)
        before = scrape(s)
        target = tmp_path / "t"
        p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
                            "--index-url", f"{s.url}/root/pypi/+simple/", "farpkg"],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        mid = scrape(s)
        assert value(mid, "devpi_upstream_requests_total") - value(before, "devpi_upstream_requests_total") >= 2
        assert value(mid, "devpi_upstream_bytes_total") - value(before, "devpi_upstream_bytes_total") >= len(data)
        assert value(mid, "devpi_upstream_errors_total") == value(before, "devpi_upstream_errors_total")
        # five clients ask at once for a page upstream takes a second to give: one fetch, four wait
        up.delays["slowpkg"] = 1.0
        up.add_file("slowpkg", "slowpkg-1.0-py3-none-any.whl", wheel_bytes("slowpkg", "1.0")[1])
        codes: list[int] = []
        threads = [threading.Thread(target=lambda: codes.append(
            requests.get(f"{s.url}/root/pypi/+simple/slowpkg/", timeout=60).status_code)) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 5
        waited = scrape(s)
        waits = sum(v for (name, _), v in waited.items() if name == "devpi_singleflight_waits_total") - \
            sum(v for (name, _), v in mid.items() if name == "devpi_singleflight_waits_total")
        assert waits >= 1  # (how many depends on where each request met the one in flight)
        up.fail_status = 503  # upstream fails: counted as errors, not hidden
        requests.get(f"{s.url}/root/pypi/+simple/otherpkg/", timeout=60)
        failed = scrape(s)
        assert value(failed, "devpi_upstream_errors_total") > value(waited, "devpi_upstream_errors_total")
        assert value(failed, "devpi_mirrors_upstream", state="ok") + value(failed, "devpi_mirrors_upstream",
                                                                           state="down") == 1


def test_gauges_are_read_at_scrape_time(server):
    auth = server.login("root", "root")
    assert server.api("PUT", "/root/g1", json={"type": "stage", "bases": []}, auth=auth).status_code == 200
    samples = scrape(server)
    serial = server.api("GET", "/+status").json()["result"]["serial"]
    assert value(samples, "devpi_serial") == serial
    assert value(samples, "devpi_db_pool_size") >= 1
    assert value(samples, "devpi_db_pool_connections", state="idle") >= 1
    assert value(samples, "devpi_uptime_seconds") > 0
    assert value(samples, "devpi_simple_page_cache_max_bytes") == 64 << 20
    assert value(samples, "process_resident_memory_bytes") > 0
    assert server.api("PUT", "/root/g2", json={"type": "stage", "bases": []}, auth=auth).status_code == 200
    assert value(scrape(server), "devpi_serial") == serial + 1


def test_every_metric_is_documented(server):
    """doc/operations.md names every metric family the server exposes (and none it does not)."""
    section = DOC.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    r = requests.get(f"{server.url}/+metrics", timeout=30)
    exposed = {f.name for f in text_string_to_metric_families(r.text) if f.name.startswith("devpi_")}
    documented = {name.removesuffix("_total") for name in re.findall(r"`(devpi_[a-z_]+)`", section)}
    assert exposed == documented, (sorted(exposed - documented), sorted(documented - exposed))
