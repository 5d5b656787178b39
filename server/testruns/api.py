"""Live test runs of ``devpi test``: HTTP API, push gating and push copying.

devpi stores a finished tox report as a "toxresult" file attached to the
tested release file (``api.files.post_toxresult``); that path stays as it
is, so the original devpi-client works. On top of it a run is a durable row
that exists from the moment a client starts testing until it finishes:

    POST /u/i/+testruns                      open a run for a release file -> id and key
    POST /u/i/+testruns/<id>/events          per-test events as they happen (also a heartbeat)
    POST /u/i/+testruns/<id>/finish          the tox report: stored as a classic toxresult too
    GET  /u/i/+testruns?file=+f/...          runs of one file (also ?project=P&version=V)
    GET  /u/i/+testruns/<id>[?since=N]       one run with its events
    GET  /u/i/<project>/<version>/+testruns  runs of a release, over the index's bases too

A run whose client falls silent for longer than the run's timeout reads as
"interrupted" at once (computed on read) and is written down as such by a
background sweep. The index key ``push_requires`` makes push refuse a
release without passing results (see ``testruns.gate``), and push copies
runs along with the files they belong to.
"""
from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from typing import Any

import bottle

from ..accounts.auth import Identity
from ..accounts.scope import TOXRESULT
from ..api.httpkit import (
    MAX_TOX_REPORT_BYTES,
    APIError,
    base_url,
    identity,
    json_reply,
    read_json,
    require_index,
)
from ..api.meta import INDEX_SEG, USER_SEG
from ..core import Core
from ..runtime.metrics import TEST_RUNS
from ..store import catalog, schema
from ..store.catalog import FileRow, IndexRow
from .gate import (
    describe,
    env_results,
    missing,
    parse_report,
    trusts,
    uploader,
)
from .store import (
    Run,
    add_events,
    copy_runs,
    events_of,
    finish_run,
    get_run,
    mark_interrupted,
    open_run,
    outcome_counts,
    runs_for_files,
    stale_running,
)

log = logging.getLogger("devpi.server.testruns")
DEFAULT_TIMEOUT = 300.0
SWEEP_INTERVAL = 5.0  # seconds; one indexed query when nothing is stale
MAX_EVENTS_PER_POST = 5000
NO_PERMISSION = ("No permission to upload tox results. You can use the devpi test --no-upload option to "
                 "skip the upload.")


# (its hook implementations, the internal plugin: testruns/hooks.py)


def default_timeout(core: Core) -> float:
    return float(core.config.extra.get("testrun_timeout") or DEFAULT_TIMEOUT)


# -- push ------------------------------------------------------------------------------------
def _requesting_index(core: Core) -> IndexRow | None:
    try:
        parts = [p for p in bottle.request.path.split("/") if p]
    except RuntimeError:  # outside a request
        return None
    return core.get_index(parts[0], parts[1]) if len(parts) >= 2 else None


def check_push_requires(core: Core, src: Any, target: str) -> None:
    """Refuse (409) a push whose release lacks a passing result for a required platform/python/env."""
    requirements: list[str] = []
    for ix in (_requesting_index(core), src.index):
        for req in (ix.config.get("push_requires") or []) if ix else []:
            if req not in requirements:
                requirements.append(req)
    if not requirements:
        return
    tested = {f.id for f in src.files if f.rel == "releasefile"}
    results = []
    for f in src.files:
        if not trusts(src.index.config, src.index.user, uploader(f.log)):
            continue  # anyone may attach a result (acl_toxresult_upload): only trusted ones count
        if f.rel == "toxresult" and f.for_file_id in tested and core.blobs.exists(f.sha256):
            results.extend(env_results(parse_report(core.blobs.read_bytes(f.sha256))))
    lacking = missing(requirements, results)
    if lacking:
        what = ", ".join(f"{req!r} ({describe(req)})" for req in lacking)
        name = src.release.metadata.get("name") or src.project.display_name
        raise APIError(409, f"cannot push {name} {src.release.version} to {target}: push_requires needs a "
                            f"passing test run for {what}; run 'devpi test' where that is met first")


def copy_on_push(tx: Any, src: Any, target: IndexRow, new_file_ids: dict[int, int]) -> None:
    if copy_runs(tx, dict(new_file_ids)):
        tx.record("testrun", index=target.fullname, op="copy")


# -- sweeping ------------------------------------------------------------------------------------
def sweep_once(core: Core) -> int:
    """Write 'interrupted' on runs whose client has been silent too long; returns how many."""
    with core.storage.read() as conn:
        stale = stale_running(conn, time.time())
    n = 0
    for run in stale:
        with core.storage.write(None) as tx:
            if mark_interrupted(tx, run):
                tx.record("testrun", run=run.id, op="interrupted")
                n += 1
    return n


def _sweep_loop(core: Core, interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            n = sweep_once(core)
            if n:
                log.info("marked %d silent test run(s) as interrupted", n)
        except Exception:
            log.exception("test run sweep failed")


def start_sweeper(core: Core) -> None:
    if core.config.extra.get("testrun_sweeper_started") or core.storage.read_only_reason is not None:
        return  # a replica: its primary sweeps, and the "interrupted" marks arrive as serials
    core.config.extra["testrun_sweeper_started"] = True
    interval = float(core.config.extra.get("testrun_sweep_interval") or SWEEP_INTERVAL)
    threading.Thread(target=_sweep_loop, args=(core, interval), name="testrun-sweeper", daemon=True).start()


# -- JSON ----------------------------------------------------------------------------------------
def _file_hrefs(core: Core, conn: Any, file_ids: set[int], root: str) -> dict[int, str]:
    if not file_ids:
        return {}
    from sqlalchemy import select

    q = (select(schema.files.c.id, schema.files.c.relpath, schema.indexes.c.user, schema.indexes.c.name)
         .join(schema.indexes, schema.indexes.c.id == schema.files.c.index_id)
         .where(schema.files.c.id.in_(file_ids)))
    return {r.id: f"{root}/{r.user}/{r.name}/{r.relpath}" for r in conn.execute(q)}


def runs_json(core: Core, conn: Any, runs: list[Run], root: str, with_events: bool = False,
              since: int = 0) -> list[dict[str, Any]]:
    now = time.time()
    hrefs = _file_hrefs(core, conn, {r.file_id for r in runs} | {r.toxresult_file_id for r in runs
                                                                   if r.toxresult_file_id}, root)
    counts = outcome_counts(conn, [r.id for r in runs])
    out = []
    for run in runs:
        href = hrefs.get(run.file_id, "")
        status = run.effective_status(now)
        envs = {name: dict(data) for name, data in run.envs.items()}
        if status == "interrupted":
            for data in envs.values():
                if data.get("status") in ("running", "unknown"):
                    data["status"] = "interrupted"
        stage_url = href.split("/+f/", 1)[0]
        doc: dict[str, Any] = {
            "id": run.id, "href": f"{stage_url}/+testruns/{run.id}", "file": href,
            "status": status, "host": run.host, "platform": run.platform,
            "python": run.python.split(" ")[0], "python_full": run.python, "label": run.label,
            "who": run.who, "started": run.started, "last_seen": run.last_seen, "finished": run.finished,
            "timeout": run.timeout, "exitcode": run.exitcode, "envs": envs,
            "counts": counts.get(run.id, {}),
            "toxresult": hrefs.get(run.toxresult_file_id) if run.toxresult_file_id else None,
            "info": run.info,
        }
        if with_events:
            doc["events"] = events_of(conn, run.id, since)
        out.append(doc)
    return out


# -- HTTP ----------------------------------------------------------------------------------------
def install(app: bottle.Bottle, core: Core) -> None:
    req = bottle.request
    base = f"/{USER_SEG}/{INDEX_SEG}/+testruns"

    def stage(user: str, index: str) -> IndexRow:
        ix = require_index(core, user, index)
        if ix.type != "stage":
            raise APIError(400, f"{ix.fullname} is a mirror: test runs attach to files of stage indexes")
        return ix

    def body_dict() -> dict[str, Any]:
        # open and events are far smaller than a report; one limit for all three keeps it simple
        body = read_json(req, max_bytes=MAX_TOX_REPORT_BYTES)
        if not isinstance(body, dict):
            raise APIError(400, "expected a JSON object")
        return body

    def release_file(ix: IndexRow, ref: Any) -> FileRow:
        ref = str(ref or "")
        marker = f"/{ix.fullname}/"
        if "://" in ref or ref.startswith("/"):
            if marker not in ref:
                raise APIError(404, f"{ref} is not a file of {ix.fullname}")
            ref = ref.split(marker, 1)[1]
        relpath = ref.split("#", 1)[0]
        with core.storage.read() as conn:
            f = catalog.get_file(conn, ix.id, relpath)
        if f is None or f.rel != "releasefile":
            raise APIError(404, f"no release file found at {relpath}")
        return f

    def owned_run(ix: IndexRow, run_id: int, body: dict[str, Any] | None = None) -> Run:
        with core.storage.read() as conn:
            run = get_run(conn, run_id)
            f = catalog.get_file_by_id(conn, run.file_id) if run else None
        if run is None or f is None or f.index_id != ix.id:
            raise APIError(404, f"no test run {run_id} on {ix.fullname}")
        if body is not None and not hmac.compare_digest(str(body.get("key") or ""), run.key):
            raise APIError(403, f"wrong key for test run {run_id}: only the client that opened it may report")
        if body is not None and not core.in_acl(Identity(run.who) if run.who else None,
                                                ix.config.get("acl_toxresult_upload") or []):
            # the key carries the opener's permission, so it ends with that permission:
            # narrowing acl_toxresult_upload revokes keys already handed out
            raise APIError(403, f"test run {run_id}: its opener may no longer upload test results "
                                f"to {ix.fullname} (acl_toxresult_upload)")
        return run

    def reply_runs(runs: list[Run], with_events: bool = False, since: int = 0) -> bottle.HTTPResponse:
        with core.storage.read() as conn:
            docs = runs_json(core, conn, runs, base_url(core, req), with_events, since)
        return json_reply(docs, "testruns")

    def open_(user: str, index: str):
        ix = stage(user, index)
        ident = identity(core, req)
        if not core.may_upload_toxresult(ident, ix):
            raise APIError(403, NO_PERMISSION)
        ident = core.within_scope(ident, TOXRESULT, ix.fullname)  # out of scope: uploads anonymously
        body = body_dict()
        f = release_file(ix, body.get("file"))
        try:
            timeout = float(body.get("timeout") or default_timeout(core))
        except (TypeError, ValueError):
            raise APIError(400, "timeout must be a number of seconds") from None
        if not math.isfinite(timeout):  # float("nan") and float("inf") read strings
            raise APIError(400, "timeout must be a number of seconds")
        timeout = min(max(timeout, 1.0), 86400.0)
        info = body.get("info") if isinstance(body.get("info"), dict) else {}
        with core.storage.write(ident.user if ident else None) as tx:
            run = open_run(tx, f.id, who=ident.user if ident else None, host=str(body.get("host") or "?"),
                           platform=str(body.get("platform") or "?"), python=str(body.get("python") or "?"),
                           label=str(body.get("label") or ""), timeout=timeout, info=info)
            tx.record("testrun", index=ix.fullname, run=run.id, relpath=f.relpath, op="open")
        with core.storage.read() as conn:
            doc = runs_json(core, conn, [run], base_url(core, req))[0]
        doc["key"] = run.key
        return json_reply(doc, "testrun", status=201)

    def post_events(user: str, index: str, run_id: int):
        ix = stage(user, index)
        body = body_dict()
        run = owned_run(ix, run_id, body)
        if run.finished is not None:
            raise APIError(409, f"test run {run_id} is finished ({run.status}); no more events")
        events = body.get("events") or []
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise APIError(400, "events must be a list of objects")
        if len(events) > MAX_EVENTS_PER_POST:
            raise APIError(413, f"at most {MAX_EVENTS_PER_POST} events per request")
        with core.storage.write(None) as tx:
            count = add_events(tx, run, events)
            # a serial of its own, like every row change: replicas follow runs as they go
            tx.record("testrun", index=ix.fullname, run=run.id, op="events", events=len(events))
        return json_reply({"id": run.id, "events": count}, "testrunprogress")

    def finish(user: str, index: str, run_id: int):
        ix = stage(user, index)
        body = body_dict()
        run = owned_run(ix, run_id, body)
        if run.finished is not None:
            raise APIError(409, f"test run {run_id} is already finished ({run.status})")
        report = body.get("toxresult")
        exitcode = body.get("exitcode")
        if exitcode is not None and not isinstance(exitcode, int):
            raise APIError(400, "exitcode must be an integer or null")
        toxresult_id = None
        envs: dict[str, dict[str, Any]] = {}
        if report is not None and not isinstance(report, dict):
            raise APIError(400, "toxresult must be a JSON object (tox's --result-json report)")
        if report is not None and not body.get("interrupted"):  # an interrupted run counts for nothing
            from ..api.files import store_toxresult

            for result in env_results(report):  # read first: a report it cannot read stores nothing
                envs[result.env] = {"python": result.python, "status": "passed" if result.passed else "failed"}
            f = _file_by_id(core, run.file_id)
            raw = json.dumps(report, sort_keys=True).encode()
            sha256 = core.blobs.put_bytes(raw)
            stored = store_toxresult(core, ix, f.relpath, sha256, len(raw), run.who)
            toxresult_id = stored.id
        if body.get("interrupted"):
            status = "interrupted"
        elif report is None:
            status = "error"
        elif exitcode == 0 and envs and all(e["status"] == "passed" for e in envs.values()):
            status = "passed"
        else:
            status = "failed"
        info = {"error": str(body["error"])[:2000]} if body.get("error") else {}
        with core.storage.write(run.who) as tx:
            finish_run(tx, run, status=status, exitcode=exitcode, envs=envs, toxresult_file_id=toxresult_id,
                       info=info)
            tx.record("testrun", index=ix.fullname, run=run.id, op="finish", status=status)
        TEST_RUNS.labels(status).inc()
        return reply_one(ix, run_id)

    def reply_one(ix: IndexRow, run_id: int, with_events: bool = False, since: int = 0):
        run = owned_run(ix, run_id)
        with core.storage.read() as conn:
            doc = runs_json(core, conn, [run], base_url(core, req), with_events, since)[0]
        return json_reply(doc, "testrun")

    def show(user: str, index: str, run_id: int):
        ix = stage(user, index)
        try:
            since = int(req.query.get("since") or 0)
        except ValueError:
            raise APIError(400, "since must be an integer") from None
        return reply_one(ix, run_id, True, since)

    def list_runs(user: str, index: str):
        ix = stage(user, index)
        with_events = "events" in req.query
        if req.query.get("file"):
            f = release_file(ix, req.query["file"])
            with core.storage.read() as conn:
                runs = runs_for_files(conn, [f.id])
            return reply_runs(runs, with_events)
        project, version = req.query.get("project"), req.query.get("version")
        if not project or not version:
            raise APIError(400, "give ?file=RELPATH, or ?project=NAME&version=VERSION")
        return reply_runs(release_runs(core, ix, project, version), with_events)

    def of_release(user: str, index: str, project: str, version: str):
        ix = stage(user, index)
        return reply_runs(release_runs(core, ix, project, version), "events" in req.query)

    app.route(base, "POST", open_)
    app.route(base, "GET", list_runs)
    app.route(base + "/<run_id:int>", "GET", show)
    app.route(base + "/<run_id:int>/events", "POST", post_events)
    app.route(base + "/<run_id:int>/finish", "POST", finish)
    app.route(f"/{USER_SEG}/{INDEX_SEG}/<project:re:[^+/][^/]*>/<version:re:[^+/][^/]*>/+testruns", "GET",
              of_release)
    start_sweeper(core)


def _file_by_id(core: Core, file_id: int) -> FileRow:
    with core.storage.read() as conn:
        f = catalog.get_file_by_id(conn, file_id)
    if f is None:
        raise APIError(410, "the tested file was deleted")
    return f


def release_runs(core: Core, ix: IndexRow, project: str, version: str) -> list[Run]:
    """Runs of every file of one version, on this index and its (non-mirror) bases the
    reader may read."""
    from ..api.read_guard import reader_hides

    hidden = reader_hides(core, bottle.request, ix)
    members = [m for m in core.resolution_order(ix) if m.fullname not in hidden]
    return runs_on(core, members, project, version)


def runs_on(core: Core, members: list[IndexRow], project: str, version: str) -> list[Run]:
    """Runs of every file of one version on ``members`` (mirrors skipped): the caller has
    left out the indexes its reader may not read."""
    from ..packaging.names import normalize_name

    name = normalize_name(project)
    file_ids: list[int] = []
    with core.storage.read() as conn:
        for member in members:
            if member.type == "mirror":
                continue
            p = catalog.get_project(conn, member.id, name)
            rel = catalog.get_release(conn, p.id, version) if p else None
            if rel is not None:
                file_ids += [f.id for f in catalog.files_of_release(conn, rel.id) if f.rel == "releasefile"]
        return runs_for_files(conn, file_ids)
