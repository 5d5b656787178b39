"""Live test runs (``devpi.server.testruns.api``), when the server has that part.

Reports uploaded at the end of a tox run are shown from the toxresult links
(``toxresults.py``); runs streamed while they happen live in the server's
test-run tables and JSON endpoints. This module adapts them for the pages
(the version page's run table, the run page with its per-test list) and
shows nothing when the server lacks the part. A running run's page polls
the run's JSON (``static/live.js``); without JavaScript it reads the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL = ("passed", "failed", "interrupted", "error")


def available() -> bool:
    try:
        import devpi.server.testruns.api
        import devpi.server.testruns.store  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class RunView:
    id: int
    status: str
    env: str
    host: str
    platform: str
    python: str
    started: float
    finished: float | None
    json_url: str  # the run's JSON (absolute)
    page_url: str  # server-root-relative HTML page
    file: str  # basename of the tested file
    counts: str
    exitcode: Any = None
    label: str = ""
    who: str | None = None
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def live(self) -> bool:
        return self.status not in FINAL


def counts_text(counts: dict[str, int]) -> str:
    order = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    parts += [f"{n} {k}" for k, n in sorted(counts.items()) if k not in order and n and k]
    return ", ".join(parts) or "no tests yet"


def _view(doc: dict[str, Any], page_prefix: str) -> RunView:
    envs = doc.get("envs") or {}
    return RunView(
        id=doc["id"], status=doc["status"], env=", ".join(sorted(envs)) or "", host=doc.get("host") or "",
        platform=doc.get("platform") or "", python=doc.get("python") or "", started=doc.get("started") or 0,
        finished=doc.get("finished"), json_url=doc["href"], page_url=f"{page_prefix}/+testruns/{doc['id']}",
        file=(doc.get("file") or "").rsplit("/", 1)[-1], counts=counts_text(doc.get("counts") or {}),
        exitcode=doc.get("exitcode"), label=doc.get("label") or "", who=doc.get("who"), envs=envs,
        events=doc.get("events") or [], error=str((doc.get("info") or {}).get("error") or ""))


def _release_runs(core: Any, members: list[Any], project: str, version: str) -> list[Any]:
    """Runs of every file of one version on ``members`` (the stages of the resolution order
    the reader may read)."""
    from devpi.server.testruns.api import runs_on

    return runs_on(core, members, project, version)


def runs_for_version(core: Any, ix: Any, members: list[Any], project: str, version: str,
                     root: str) -> list[RunView]:
    """The runs of a release's files (on the index and its readable bases), newest first."""
    if not available() or ix.type != "stage":
        return []
    from devpi.server.testruns.api import runs_json

    runs = _release_runs(core, members, project, version)
    if not runs:
        return []
    with core.storage.read() as conn:
        docs = runs_json(core, conn, runs, root)
    prefix = f"/{ix.fullname}/{project}/{version}"
    return sorted((_view(d, prefix) for d in docs), key=lambda r: r.id, reverse=True)


def run_detail(core: Any, ix: Any, members: list[Any], project: str, version: str, run_id: int,
               root: str) -> RunView | None:
    """One run of this release (on the index and its readable bases) with its per-test events, or None."""
    if not available() or ix.type != "stage":
        return None
    from devpi.server.testruns.api import runs_json

    runs = [r for r in _release_runs(core, members, project, version) if r.id == run_id]
    if not runs:
        return None
    with core.storage.read() as conn:
        doc = runs_json(core, conn, runs, root, with_events=True)[0]
    return _view(doc, f"/{ix.fullname}/{project}/{version}")
