"""A mirror's memory is bounded: what it forgets is looked up again, never answered wrongly.

The server runs as usual, with its memory budgets (``--mirror-memory`` for pages, in bytes,
and ``devpi.server.mirror.repository.MEMORY_*``) set tiny before it starts, so that every step below
evicts something.
"""
from __future__ import annotations

import sys

import pytest
import requests
from mirror_helpers import file_url, filenames, installed, page, pip_install, sha256, wait_for_rows
from support.server import ServerProcess

BUDGETS = {"MEMORY_FILES": 2, "MEMORY_MISSING": 2}
PAGE_BYTES = "4500"  # --mirror-memory: one two-link page (about 3.3 KB, see mirror._weight) fits, two do not
PROJECTS = ["mb-a", "mb-b", "mb-c", "mb-d"]


class TinyMemoryServer(ServerProcess):
    def command(self) -> list[str]:
        patch = "; ".join(f"m.{k} = {v}" for k, v in BUDGETS.items())
        code = (f"import sys, devpi.server.mirror.repository as m; {patch}; "
                "from devpi.server.main import main; raise SystemExit(main(sys.argv[1:]))")
        return [sys.executable, "-c", code, *super().command()[3:], "--mirror-memory", PAGE_BYTES]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, upstream):
    for name in PROJECTS:
        upstream.add_wheel(name, "1.0")
        upstream.add_wheel(name, "2.0")  # two links: one page fits the budget, two do not
    upstream.add_wheel("mb-app", "1.0", requires_dist=PROJECTS)
    s = TinyMemoryServer(tmp_path_factory.mktemp("tiny") / "server", mirror_url=upstream.url).start()
    yield s
    s.stop()
    assert "mirror: could not store" not in s.log_text()


def test_evicted_pages_and_files_are_looked_up_again_not_fetched_again(tiny, upstream):
    base = f"{tiny.url}/root/pypi/+simple/"
    urls = {}
    for name in PROJECTS:
        resp = page(base + f"{name}/")
        assert filenames(resp) == [f"{name.replace('-', '_')}-{v}-py3-none-any.whl" for v in ("1.0", "2.0")]
        urls[name] = [file_url(base + f"{name}/", resp, f) for f in filenames(resp)]
    wait_for_rows(tiny, "mirror_pages", len(PROJECTS))
    upstream.reset_log()

    # Each file request needs its project's page, which only the last one fetched still has
    # in memory: the others come back from SQL, none from upstream.
    for name in PROJECTS:
        for url in urls[name]:
            r = requests.get(url, timeout=30)
            assert r.status_code == 200
            assert sha256(r.content) == upstream.get_file(url.rsplit("/", 1)[1]).sha256
    assert upstream.count(lambda r: r.project is not None and r.filename is None) == 0
    assert upstream.count(lambda r: r.filename is not None) == 2 * len(PROJECTS)
    wait_for_rows(tiny, "mirror_files", 2 * len(PROJECTS))

    # Files forgotten from memory (two of eight are kept) are served from their rows and blobs.
    upstream.reset_log()
    for name in PROJECTS:
        for url in urls[name]:
            r = requests.get(url, timeout=30)
            assert r.status_code == 200 and sha256(r.content) == upstream.get_file(url.rsplit("/", 1)[1]).sha256
    assert upstream.count() == 0


def test_unknown_names_are_remembered_within_the_budget_only(tiny, upstream):
    base = f"{tiny.url}/root/pypi/+simple/"
    unknown = ["mb-nope-1", "mb-nope-2", "mb-nope-3"]
    for name in unknown:
        assert page(base + f"{name}/").status_code == 404
    upstream.reset_log()
    # newest first (asking again remembers the name again, which pushes out the oldest):
    # the third is still known, the first was forgotten to make room for it
    for name in ("mb-nope-3", "mb-nope-1"):
        assert page(base + f"{name}/").status_code == 404
    assert upstream.count("/simple/mb-nope-3/") == 0
    assert upstream.count("/simple/mb-nope-1/") == 1


def test_pip_installs_through_a_mirror_that_keeps_almost_nothing_in_memory(tiny, tmp_path):
    result = pip_install(f"{tiny.url}/root/pypi/+simple/", tmp_path / "t", "mb-app")
    assert result.returncode == 0, result.stderr
    assert installed(tmp_path / "t") == {"mb-app": "1.0", **{name: "2.0" for name in PROJECTS}}
