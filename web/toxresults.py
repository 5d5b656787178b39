"""Test results as devpi stores them: tox JSON reports attached to release files.

A report (rel "toxresult") names a host and platform and, per tox env, the
python and the setup/test commands with their exit codes. The matrix shows,
per file, one row per (env, platform, python) with the newest report's
outcome, as ``devpi list -t`` does; each row links to the run page with the
commands and their output.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .model import FileInfo, VersionInfo


@dataclass
class Command:
    command: str
    retcode: Any
    output: str

    @property
    def failed(self) -> bool:
        return str(self.retcode) not in ("0", "None")


@dataclass
class EnvResult:
    env: str
    python: str
    outcome: str  # passed | failed | setup failed | no tests
    setup: list[Command] = field(default_factory=list)
    test: list[Command] = field(default_factory=list)


@dataclass
class Report:
    file: FileInfo  # the toxresult link
    tested: str  # basename of the release file it belongs to
    host: str
    platform: str
    toxversion: str
    envs: list[EnvResult]
    error: str | None = None


def _commands(items: Any) -> list[Command]:
    out = []
    for c in items if isinstance(items, list) else []:
        if not isinstance(c, dict):
            continue
        cmd = c.get("command")
        cmd = " ".join(str(x) for x in cmd) if isinstance(cmd, list) else str(cmd or "")
        out.append(Command(cmd, c.get("retcode"), str(c.get("output") or "")))
    return out


def parse_report(data: Any, file: FileInfo, tested: str) -> Report:
    if not isinstance(data, dict):
        return Report(file, tested, "", "", "", [], error="not a tox report")
    envs = []
    testenvs = data.get("testenvs") if isinstance(data.get("testenvs"), dict) else {}
    for name, env in sorted(testenvs.items()):
        if not isinstance(env, dict):
            continue
        python = env.get("python") if isinstance(env.get("python"), dict) else {}
        version = str(python.get("version") or "").split(" ")[0] if python else ""
        setup, test = _commands(env.get("setup")), _commands(env.get("test"))
        if any(c.failed for c in setup):
            outcome = "setup failed"
        elif not test:
            outcome = "no tests"
        elif any(c.failed for c in test):
            outcome = "failed"
        else:
            outcome = "passed"
        if str(name).startswith(".") and outcome != "setup failed":
            continue  # tox's packaging envs (.pkg, .pkg_external...): no tests of their own; shown when they broke
        envs.append(EnvResult(str(name), version, outcome, setup, test))
    return Report(file, tested, str(data.get("host") or ""), str(data.get("platform") or ""),
                  str(data.get("toxversion") or ""), envs)


def load_reports(core: Any, version: VersionInfo, only: str | None = None) -> list[Report]:
    """Reports of a version, newest first; ``only`` limits to one release file or one report."""
    names = {f.id: f.filename for f in version.files}
    reports = []
    for tr in sorted(version.toxresults, key=lambda f: (f.upload_time or 0, f.filename), reverse=True):
        tested = names.get(tr.for_file_id, "")
        if only and only not in (tested, tr.filename):
            continue
        try:
            with open(core.blobs.path(tr.sha256), "rb") as fh:
                data = json.loads(fh.read(32 * 1024 * 1024))
        except (OSError, ValueError) as e:
            reports.append(Report(tr, tested, "", "", "", [], error=f"unreadable report: {e}"))
            continue
        reports.append(parse_report(data, tr, tested))
    return reports


@dataclass
class MatrixRow:
    env: str
    platform: str
    python: str
    host: str
    outcome: str
    tested: str
    report: str  # toxresult basename (anchor on the run page)
    when: float | None


def matrix(reports: list[Report]) -> list[MatrixRow]:
    """Newest outcome per (file, env, platform, python, host)."""
    rows: dict[tuple, MatrixRow] = {}
    for rep in reports:  # newest first: first one seen wins
        for env in rep.envs:
            key = (rep.tested, env.env, rep.platform, env.python, rep.host)
            if key not in rows:
                rows[key] = MatrixRow(env.env, rep.platform, env.python, rep.host, env.outcome, rep.tested,
                                      rep.file.filename, rep.file.upload_time)
    return sorted(rows.values(), key=lambda r: (r.env, r.platform, r.python, r.tested))
