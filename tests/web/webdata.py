"""Sample content for the web tests and screenshots: users, indexes, releases, docs, test reports.

Everything goes in over HTTP the way twine, devpi upload and devpi test send it.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import requests
from support.dists import write_sdist, write_wheel

PASSWORD = "secret"
CHROMIUM = os.environ.get("DEVPI_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BROWSER_HEADERS = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                   "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) test"}
FROB_DESCRIPTION = """\
# Frobnicator

Frobnicator turns **quasiperiodic** signals into tidy frobs.

## Usage

```python
import frobnicator
frobnicator.frob("signal")
```

| option | meaning |
|--------|---------|
| `fast` | skip the careful bits |
"""
XSS_MARKDOWN = """\
# Harmless title

<script>window.__xss = 'markdown-script';</script>
<img src=x onerror="window.__xss = 'markdown-onerror'">
<a href="javascript:window.__xss='markdown-link'">click me</a>
[md link](javascript:window.__xss='md-link')
<iframe src="javascript:window.__xss='iframe'"></iframe>
Plain text survives: xssmarkerword.
"""
XSS_RST = """\
Title
=====

A `reST link <javascript:window.__xss='rst-link'>`_ and xssmarkerword.

.. raw:: html

   <script>window.__xss = 'rst-raw';</script>
"""
XSS_PLAIN = "<script>window.__xss = 'plain'</script> <a href=\"javascript:x\">plain link</a> xssmarkerword"


def doc_zip(title: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", f"<!doctype html><html><head><title>{title}</title>"
                    '<link rel="stylesheet" href="_static/site.css"></head>'
                    f'<body><h1 id="doc-title">{title}</h1><p><a href="guide/">Read the guide</a></p>'
                    # what Sphinx themes do: a script file of the zip's own and an inline one
                    '<p id="file-script" hidden></p><p id="inline-script" hidden></p>'
                    '<script src="_static/doc.js"></script>'
                    "<script>document.getElementById('inline-script').textContent = 'inline ran';</script>"
                    '</body></html>')
        zf.writestr("_static/site.css", "body { font-family: sans-serif; color: #223; } h1 { color: #2f5f9e; }")
        zf.writestr("_static/doc.js", "document.getElementById('file-script').textContent = 'file ran';")
        zf.writestr("guide/index.html", '<!doctype html><html><body><h1 id="guide">The guide</h1></body></html>')
    return buf.getvalue()


def tox_report(env: str, python: str, ok: bool, *, platform: str = "linux", host: str = "ci-1") -> dict:
    test_cmd = {"command": ["python", "-m", "pytest", "-q"], "retcode": 0 if ok else 1,
                "output": "3 passed in 0.02s\n" if ok else
                "F..\nFAILED tests/test_frob.py::test_edge - AssertionError: frob mismatch\n1 failed, 2 passed\n"}
    return {"reportversion": "1", "toxversion": "4.11.0", "platform": platform, "host": host,
            "testenvs": {env: {"python": {"version": f"{python} (main, Jan 1 2024)"},
                               "setup": [{"command": ["python", "-m", "pip", "install", "frobnicator"],
                                          "retcode": 0, "output": "Successfully installed frobnicator\n"}],
                               "test": [test_cmd]}}}


def upload_docs(server, index: str, name: str, version: str, data: bytes) -> requests.Response:
    return requests.post(f"{server.url}/{index}/", auth=("alice", PASSWORD), timeout=60,
                         data={":action": "doc_upload", "name": name, "version": version},
                         files={"content": (f"{name}-{version}.doc.zip", data)})


def post_toxresult(server, index: str, name: str, version: str, filename_end: str, report: dict) -> str:
    data = server.api("GET", f"/{index}/{name}/{version}").json()["result"]
    href = next(link["href"] for link in data["+links"]
                if link["rel"] == "releasefile" and link["href"].endswith(filename_end))
    r = requests.post(href, json=report, headers={"Accept": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text
    return href.rsplit("/", 1)[1]


def populate(server, workdir: Path) -> dict:
    """alice/prod <- alice/dev <- root/pypi; returns names the tests look for."""
    workdir.mkdir(parents=True, exist_ok=True)
    alice = server.create_user("alice", PASSWORD, title="Alice's team", email="alice@example.invalid")
    server.create_index(alice, "prod", bases=["root/pypi"], volatile=False, title="Production releases")
    server.create_index(alice, "dev", bases=["alice/prod"], title="Work in progress")
    auth = ("alice", PASSWORD)

    def up(index: str, path: Path) -> None:
        r = server.upload(index, path, auth)
        assert r.status_code == 200, r.text

    frob_meta = dict(summary="Turns signals into frobs", description=FROB_DESCRIPTION,
                     description_content_type="text/markdown", requires_python=">=3.9",
                     requires_dist=["helper-lib>=0.9", "colorama; sys_platform == 'win32'"],
                     classifiers=["License :: OSI Approved :: MIT License",
                                  "Programming Language :: Python :: 3"],
                     project_urls=["Source, https://example.invalid/frobnicator",
                                   "Sneaky, javascript:window.__xss='project-url'"])
    for version in ("1.0", "2.0"):
        up("alice/dev", write_wheel(workdir, "frobnicator", version, **frob_meta))
        up("alice/dev", write_sdist(workdir, "frobnicator", version, **frob_meta))
    r = server.api("POST", "/alice/dev/frobnicator/1.0/+yank", json={"reason": "broken build"}, auth=server.login(*auth))
    assert r.status_code == 200, r.text
    up("alice/prod", write_wheel(workdir, "helper-lib", "0.9", summary="Small helpers, the stable line"))
    up("alice/dev", write_wheel(workdir, "helper-lib", "1.0", summary="Small helpers for frobbing"))
    up("alice/dev", write_wheel(workdir, "evil-markdown", "1.0", summary="markdown with script",
                                description=XSS_MARKDOWN, description_content_type="text/markdown"))
    up("alice/dev", write_wheel(workdir, "evil-rst", "1.0", summary="reST with script", description=XSS_RST,
                                description_content_type="text/x-rst"))
    up("alice/dev", write_wheel(workdir, "evil-plain", "1.0", summary="plain text <b>with</b> <script>window.__xss='summary'</script>",
                                description=XSS_PLAIN, description_content_type="text/plain"))
    r = upload_docs(server, "alice/dev", "frobnicator", "2.0", doc_zip("Frobnicator manual"))
    assert r.status_code == 200, r.text
    report_file = post_toxresult(server, "alice/dev", "frobnicator", "2.0", ".tar.gz",
                                 tox_report("py311", "3.11.7", True))
    post_toxresult(server, "alice/dev", "frobnicator", "2.0", ".tar.gz",
                   tox_report("py312", "3.12.1", False, host="ci-2"))
    return {"report_file": report_file}
