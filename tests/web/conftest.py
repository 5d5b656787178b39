"""Fixtures of the web tests: one populated server per module, and headless Chromium."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.server import ServerProcess
from webdata import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    """A server with the sample content of webdata.populate (shared by a module's tests)."""
    from webdata import populate

    base = tmp_path_factory.mktemp("web")
    server = ServerProcess(base / "server").start()
    try:
        server.sample = populate(server, base / "dists")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()
