"""The pages in a real headless Chromium: reading, searching, docs, test runs, safety, narrow windows."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_browse_home_to_version_and_read_description(web_server, browser, page, tmp_path):
    page.goto(web_server.url + "/")
    assert page.title() == "Indexes · devpi"
    page.get_by_role("link", name="alice/dev", exact=True).first.click()
    page.wait_for_url("**/alice/dev")
    assert page.locator("h1").inner_text() == "alice/dev"
    page.locator("table.projects").get_by_role("link", name="frobnicator", exact=True).click()
    page.wait_for_url("**/alice/dev/frobnicator")
    rows = page.locator("table.versions tbody tr")
    assert rows.count() == 2
    assert "yanked" in rows.nth(1).inner_text()
    rows.nth(0).get_by_role("link", name="2.0", exact=True).click()
    page.wait_for_url("**/alice/dev/frobnicator/2.0")
    readme = page.locator("#description")
    assert "Frobnicator turns quasiperiodic signals into tidy frobs." in readme.inner_text()
    assert readme.locator("strong").inner_text() == "quasiperiodic"
    assert readme.locator("table").count() == 1
    # the stylesheet applied (served under the CSP): cards have a border radius
    radius = page.eval_on_selector(".card", "e => getComputedStyle(e).borderTopLeftRadius")
    assert radius == "8px"
    shot = tmp_path / "version.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(browser, shot)


PIXEL_STATS = """async (src) => {
  const img = new Image();
  img.src = src;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, img.width, img.height).data;
  let n = 0, sum = 0, sq = 0;
  const colours = new Set();
  for (let i = 0; i < data.length; i += 4 * 7) {
    const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    n++; sum += y; sq += y * y;
    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  const mean = sum / n;
  return {width: img.width, height: img.height, stddev: Math.sqrt(sq / n - mean * mean), colours: colours.size};
}"""


def assert_not_blank(browser, path) -> None:
    """A real page has many colours and a spread of brightness; a blank one has neither.

    The PNG is decoded by the browser itself (canvas), so no imaging library is needed.
    """
    import base64

    context = browser.new_context()
    try:
        pg = context.new_page()
        src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        stats = pg.evaluate(PIXEL_STATS, src)
    finally:
        context.close()
    assert stats["width"] >= 1000 and stats["height"] >= 600, stats
    assert stats["stddev"] > 20, f"screenshot looks blank: {stats}"
    assert stats["colours"] > 30, f"screenshot looks blank: {stats}"


def test_search_finds_project_by_description_word(web_server, page):
    page.goto(web_server.url + "/alice/prod")
    page.get_by_role("searchbox").fill("quasiperiodic")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/+search?q=quasiperiodic")
    hit = page.locator("li.hit").first
    assert hit.locator("a.strong").inner_text() == "frobnicator"
    assert hit.locator("a.badge").inner_text() == "alice/dev"
    assert hit.locator("mark").first.inner_text().lower() == "quasiperiodic"
    hit.locator("a.strong").click()
    page.wait_for_url("**/alice/dev/frobnicator")


def test_open_hosted_docs(web_server, page):
    page.goto(web_server.url + "/alice/dev/frobnicator/2.0")
    page.get_by_role("link", name="Read the documentation").click()
    page.wait_for_url("**/frobnicator/2.0/+doc/")
    assert page.locator("#doc-title").inner_text() == "Frobnicator manual"
    color = page.eval_on_selector("h1", "e => getComputedStyle(e).color")
    assert color == "rgb(47, 95, 158)"  # the zip's own stylesheet loaded
    # the docs' scripts run, from files and inline, but in an opaque origin: not as this server
    assert page.locator("#file-script").text_content() == "file ran"
    assert page.locator("#inline-script").text_content() == "inline ran"
    assert page.evaluate("() => window.origin") == "null"
    assert page.evaluate("() => { try { return document.cookie, 'cookies readable'; }"
                         " catch (e) { return e.name; } }") == "SecurityError"
    page.get_by_role("link", name="Read the guide").click()
    page.wait_for_url("**/+doc/guide/")
    assert page.locator("#guide").inner_text() == "The guide"


def test_test_result_run_page(web_server, page):
    page.goto(web_server.url + "/alice/dev/frobnicator/2.0")
    matrix = page.locator("table.matrix tbody tr")
    assert matrix.count() == 2
    failed = page.locator("table.matrix tr", has_text="py312")
    assert failed.locator(".outcome").inner_text() == "failed"
    failed.locator("a").click()
    page.wait_for_url("**/+toxresults/**")
    report = page.locator("section.report", has_text="ci-2")
    output = report.locator("details[open] pre.output")
    assert "AssertionError: frob mismatch" in output.inner_text()
    assert page.locator("section.report").count() == 2


@pytest.mark.parametrize("project", ["evil-markdown", "evil-rst", "evil-plain"])
def test_user_html_and_script_are_neutralised(web_server, page, project):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{web_server.url}/alice/dev/{project}/1.0")
    page.wait_for_load_state("load")
    readme = page.locator("#description")
    assert "xssmarkerword" in readme.inner_text()
    # nothing ran, and nothing that could run is in the DOM
    assert page.evaluate("window.__xss === undefined")
    assert page.locator("#description script, #description iframe, #description [onerror]").count() == 0
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if h.strip().lower().startswith(("javascript:", "data:"))]
    # clicking every link the description kept stays harmless
    for link in readme.locator("a").all():
        if link.is_visible():
            link.click(no_wait_after=True)
    assert page.evaluate("window.__xss === undefined") and not dialogs


def test_summaries_are_text_on_listing_pages(web_server, page):
    for path in ("/alice/dev", "/+search?q=plain"):
        page.goto(web_server.url + path)
        assert "<script>window.__xss='summary'</script>" in page.locator("main").inner_text()
        assert page.locator("main script, main b").count() == 0
        assert page.evaluate("window.__xss === undefined")


def test_project_urls_with_javascript_are_not_links(web_server, page):
    page.goto(f"{web_server.url}/alice/dev/frobnicator/2.0")
    links = page.locator("ul.links")
    assert links.get_by_role("link", name="Source").get_attribute("href") == "https://example.invalid/frobnicator"
    assert links.get_by_role("link", name="Sneaky").count() == 0


def test_narrow_window_has_no_horizontal_scrolling(web_server, browser):
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    try:
        for path in ("/", "/alice/dev", "/alice/dev/frobnicator", "/alice/dev/frobnicator/2.0",
                     "/+search?q=frob"):
            page.goto(web_server.url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a phone screen"
    finally:
        context.close()


def test_live_run_page_updates_while_running(web_server, page):
    """A run streamed by devpi test: readable without JS, and updated in place while it runs."""
    auth = web_server.login("alice", "secret")
    data = web_server.api("GET", "/alice/dev/helper-lib/1.0").json()["result"]
    href = next(link["href"] for link in data["+links"] if link["rel"] == "releasefile")
    r = web_server.api("POST", "/alice/dev/+testruns", auth=auth,
                       json={"file": href, "host": "builder", "platform": "linux", "python": "3.11.7"})
    assert r.status_code == 201, r.text
    run = r.json()["result"]
    events = [{"env": "py311", "nodeid": "tests/test_helpers.py::test_ok", "outcome": "passed", "duration": 0.01},
              {"env": "py311", "nodeid": "tests/test_helpers.py::test_broken", "outcome": "failed",
               "duration": 0.02, "longrepr": "assert 1 == 2\nE   AssertionError: live failure text"}]
    r = web_server.api("POST", f"/alice/dev/+testruns/{run['id']}/events", json={"key": run["key"], "events": events})
    assert r.status_code == 200, r.text

    # without JavaScript the page already says everything
    ctx = page.context.browser.new_context(java_script_enabled=False)
    try:
        nojs = ctx.new_page()
        nojs.goto(f"{web_server.url}/alice/dev/helper-lib/1.0")
        row = nojs.locator("table.runs tbody tr").first
        assert row.locator("[data-field=status]").inner_text() == "running"
        row.locator("a").first.click()
        nojs.wait_for_url(f"**/alice/dev/helper-lib/1.0/+testruns/{run['id']}")
        assert nojs.locator("#run-status").inner_text() == "running"
        assert nojs.locator("#events tr").count() == 2
        assert "AssertionError: live failure text" in nojs.locator("#events tr.ev-failed pre").inner_text()
    finally:
        ctx.close()

    page.goto(f"{web_server.url}/alice/dev/helper-lib/1.0/+testruns/{run['id']}")
    assert page.locator("#events tr").count() == 2
    more = [{"env": "py311", "nodeid": "tests/test_helpers.py::test_late", "outcome": "passed", "duration": 0.03}]
    r = web_server.api("POST", f"/alice/dev/+testruns/{run['id']}/events", json={"key": run["key"], "events": more})
    assert r.status_code == 200, r.text
    page.locator("#events tr", has_text="test_late").wait_for(timeout=15000)
    assert page.locator("#run-status").inner_text() == "running"
    r = web_server.api("POST", f"/alice/dev/+testruns/{run['id']}/finish",
                       json={"key": run["key"], "exitcode": 1, "toxresult": {
                           "reportversion": "1", "platform": "linux", "host": "builder",
                           "testenvs": {"py311": {"python": {"version": "3.11.7"},
                                                  "test": [{"command": ["pytest"], "retcode": 1, "output": "1 failed"}]}}}})
    assert r.status_code == 200, r.text
    from playwright.sync_api import expect

    expect(page.locator("#run-status")).to_have_text("failed", timeout=15000)
    assert page.locator("#run-exitcode").inner_text() == "1"
    assert page.locator("#run-counts").inner_text() == "2 passed, 1 failed"
