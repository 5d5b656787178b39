"""Rows of test runs and their events: open, append, finish, read, sweep, copy.

A run's stored ``status`` is what the server last knew; the status a reader
sees is computed by ``effective_status``: a run still marked running whose
client has been silent for longer than its timeout reads as "interrupted",
even before the background sweep has written that down. So a client that
was killed never leaves a run that looks alive, let alone passed.

Events are written without a changelog entry (no serial per test): they are
live progress, not index state. Opening and finishing a run are recorded.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection

from ..store import schema
from ..store.storage import WriteTx, dumps, loads

FINAL = ("passed", "failed", "interrupted", "error")
OUTCOMES = ("passed", "failed", "skipped", "error", "xfailed", "xpassed")


@dataclass
class Run:
    id: int
    file_id: int
    status: str
    key: str
    who: str | None
    host: str
    platform: str
    python: str
    label: str
    started: float
    last_seen: float
    timeout: float
    finished: float | None
    exitcode: int | None
    toxresult_file_id: int | None
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def effective_status(self, now: float | None = None) -> str:
        if self.status == "running" and (now or time.time()) - self.last_seen > self.timeout:
            return "interrupted"
        return self.status


def _run(row: Any) -> Run:
    return Run(row.id, row.file_id, row.status, row.key, row.who, row.host, row.platform, row.python,
               row.label, row.started, row.last_seen, row.timeout, row.finished, row.exitcode,
               row.toxresult_file_id, loads(row.envs) or {}, loads(row.info) or {})


def open_run(tx: WriteTx, file_id: int, *, who: str | None, host: str, platform: str, python: str,
             label: str, timeout: float, info: dict[str, Any]) -> Run:
    now = time.time()
    key = secrets.token_hex(16)
    values = dict(file_id=file_id, status="running", key=key, who=who, host=host[:300], platform=platform[:50],
                  python=python[:300], label=label[:300], started=now, last_seen=now, timeout=timeout,
                  finished=None, exitcode=None, toxresult_file_id=None, envs=dumps({}), info=dumps(info))
    res = tx.conn.execute(insert(schema.testruns).values(**values))
    values.update(envs={}, info=info)
    return Run(id=res.inserted_primary_key[0], **values)  # type: ignore[arg-type]


def get_run(conn: Connection, run_id: int) -> Run | None:
    row = conn.execute(select(schema.testruns).where(schema.testruns.c.id == run_id)).first()
    return _run(row) if row else None


def runs_for_files(conn: Connection, file_ids: list[int]) -> list[Run]:
    if not file_ids:
        return []
    q = (select(schema.testruns).where(schema.testruns.c.file_id.in_(file_ids))
         .order_by(schema.testruns.c.id))
    return [_run(r) for r in conn.execute(q)]


def _clip(value: Any, limit: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 20] + "\n... (truncated)"


def add_events(tx: WriteTx, run: Run, events: list[dict[str, Any]]) -> int:
    """Append events in arrival order; also a sign of life. Returns the run's event count."""
    now = time.time()
    seq = tx.conn.execute(select(func.count()).select_from(schema.testrun_events)
                          .where(schema.testrun_events.c.run_id == run.id)).scalar() or 0
    envs = dict(run.envs)
    rows = []
    for ev in events:
        env = str(ev.get("env") or "")[:200]
        outcome = str(ev.get("outcome") or "")[:20]
        duration = ev.get("duration")
        rows.append(dict(run_id=run.id, seq=seq, received=now, env=env, nodeid=_clip(ev.get("nodeid"), 4000),
                         outcome=outcome, duration=float(duration) if isinstance(duration, (int, float)) else None,
                         longrepr=_clip(ev.get("longrepr"), 64_000) if ev.get("longrepr") else None,
                         data=dumps({k: v for k, v in ev.items() if k not in ("longrepr",)})))
        seq += 1
        if env:
            entry = envs.setdefault(env, {"status": "running"})
            if ev.get("python"):
                entry["python"] = str(ev["python"])[:50]
            if outcome in ("failed", "error"):
                entry["failures"] = entry.get("failures", 0) + 1
    if rows:
        tx.conn.execute(insert(schema.testrun_events).return_defaults(), rows)  # ids for the row journal
    values: dict[str, Any] = {"last_seen": now}
    if envs != run.envs:
        values["envs"] = dumps(envs)
    if run.status == "interrupted" and run.finished is None:
        values["status"] = "running"  # the sweep was wrong: the client is evidently alive
    tx.conn.execute(update(schema.testruns).where(schema.testruns.c.id == run.id).values(**values))
    return seq


def events_of(conn: Connection, run_id: int, since: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
    q = (select(schema.testrun_events).where(schema.testrun_events.c.run_id == run_id,
                                             schema.testrun_events.c.seq >= since)
         .order_by(schema.testrun_events.c.seq).limit(limit))
    out = []
    for r in conn.execute(q):
        data = loads(r.data) or {}
        data.update(seq=r.seq, received=r.received, env=r.env, nodeid=r.nodeid, outcome=r.outcome,
                    duration=r.duration, longrepr=r.longrepr)
        out.append(data)
    return out


def outcome_counts(conn: Connection, run_ids: list[int]) -> dict[int, dict[str, int]]:
    if not run_ids:
        return {}
    q = (select(schema.testrun_events.c.run_id, schema.testrun_events.c.outcome, func.count())
         .where(schema.testrun_events.c.run_id.in_(run_ids))
         .group_by(schema.testrun_events.c.run_id, schema.testrun_events.c.outcome))
    out: dict[int, dict[str, int]] = {}
    for run_id, outcome, n in conn.execute(q):
        out.setdefault(run_id, {})[outcome] = n
    return out


def finish_run(tx: WriteTx, run: Run, *, status: str, exitcode: int | None, envs: dict[str, dict[str, Any]],
               toxresult_file_id: int | None, info: dict[str, Any]) -> None:
    now = time.time()
    merged = dict(run.envs)
    for name, data in envs.items():
        merged[name] = {**merged.get(name, {}), **data}
    for data in merged.values():
        if data.get("status") == "running":
            data["status"] = "interrupted" if status == "interrupted" else "unknown"
    tx.conn.execute(update(schema.testruns).where(schema.testruns.c.id == run.id).values(
        status=status, exitcode=exitcode, finished=now, last_seen=now, envs=dumps(merged),
        toxresult_file_id=toxresult_file_id, info=dumps({**run.info, **info})))


def stale_running(conn: Connection, now: float) -> list[Run]:
    q = select(schema.testruns).where(and_(schema.testruns.c.status == "running",
                                           schema.testruns.c.last_seen + schema.testruns.c.timeout < now))
    return [_run(r) for r in conn.execute(q)]


def mark_interrupted(tx: WriteTx, run: Run) -> bool:
    """Write down what readers already compute; only if it is still silent (no race with an event)."""
    res = tx.conn.execute(update(schema.testruns).where(
        schema.testruns.c.id == run.id, schema.testruns.c.status == "running",
        schema.testruns.c.last_seen == run.last_seen).values(status="interrupted"))
    return bool(res.rowcount)


def copy_runs(tx: WriteTx, file_map: dict[int, int]) -> int:
    """Duplicate the runs (and events) of the files in ``file_map`` (old id -> new id); for push."""
    n = 0
    for run in runs_for_files(tx.conn, list(file_map)):
        values = {c.name: getattr(run, c.name) for c in schema.testruns.columns if c.name != "id"}
        values.update(file_id=file_map[run.file_id], envs=dumps(run.envs), info=dumps(run.info),
                      status=run.effective_status(),
                      toxresult_file_id=file_map.get(run.toxresult_file_id) if run.toxresult_file_id else None)
        new_id = tx.conn.execute(insert(schema.testruns).values(**values)).inserted_primary_key[0]
        events = tx.conn.execute(select(schema.testrun_events).where(
            schema.testrun_events.c.run_id == run.id)).all()
        if events:
            tx.conn.execute(insert(schema.testrun_events).return_defaults(), [
                {**{c.name: getattr(e, c.name) for c in schema.testrun_events.columns if c.name != "id"},
                 "run_id": new_id} for e in events])
        n += 1
    return n

