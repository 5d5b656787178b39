"""Screenshots of the main pages for doc/web.md (``python tests/web/make_screenshots.py [OUTDIR]``).

Starts a throwaway server with the sample content the web tests use, and
photographs the pages in headless Chromium, wide and narrow.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from support.server import ServerProcess  # noqa: E402
from webdata import CHROMIUM, CHROMIUM_ARGS, populate  # noqa: E402

PAGES = [
    ("home", "/", 1280, 720, False),
    ("index", "/alice/dev", 1280, 860, False),
    ("project", "/alice/dev/helper-lib", 1280, 640, False),
    ("version", "/alice/dev/frobnicator/2.0", 1280, 1400, False),
    ("search", "/+search?q=frob", 1280, 720, False),
    ("toxresults", "/alice/dev/frobnicator/2.0/+toxresults/{report_file}", 1280, 900, False),
    ("testrun", "/alice/dev/helper-lib/1.0/+testruns/{run_id}", 1280, 760, False),
    ("version-narrow", "/alice/dev/frobnicator/2.0", 390, 1400, False),
]


def start_run(server) -> int:
    """A run that is still going, with a failure, as `devpi test` streams it."""
    auth = server.login("alice", "secret")
    data = server.api("GET", "/alice/dev/helper-lib/1.0").json()["result"]
    href = next(link["href"] for link in data["+links"] if link["rel"] == "releasefile")
    r = server.api("POST", "/alice/dev/+testruns", auth=auth,
                   json={"file": href, "host": "builder-3", "platform": "linux", "python": "3.12.1"})
    run = r.json()["result"]
    events = [{"env": "py312", "nodeid": f"tests/test_helpers.py::test_case_{n}", "outcome": "passed",
               "duration": 0.01 * n} for n in range(1, 6)]
    events.append({"env": "py312", "nodeid": "tests/test_helpers.py::test_round_trip", "outcome": "failed",
                   "duration": 0.12, "longrepr": "    def test_round_trip():\n>       assert load(dump(x)) == x\n"
                                                 "E       AssertionError: assert {'a': 1} == {'a': 2}"})
    server.api("POST", f"/alice/dev/+testruns/{run['id']}/events", json={"key": run["key"], "events": events})
    return run["id"]


def main(outdir: Path) -> None:
    from playwright.sync_api import sync_playwright

    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="devpi-shots-") as tmp:
        server = ServerProcess(Path(tmp) / "server").start()
        try:
            sample = populate(server, Path(tmp) / "dists")
            sample["run_id"] = start_run(server)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for name, path, width, height, full in PAGES:
                    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
                    page = ctx.new_page()
                    page.goto(server.url + path.format(**sample))
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(outdir / f"{name}.png"), full_page=full)
                    ctx.close()
                    print(f"{outdir / name}.png  <- {path.format(**sample)}")
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent.parent / "doc" / "screenshots")
