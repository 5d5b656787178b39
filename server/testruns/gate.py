"""``push_requires``: which passing test results a release needs before it may be pushed.

A requirement is a platform (``linux``, ``win32``, ``darwin``: a prefix of
``sys.platform``), a Python version (``py3``, ``py312`` or ``py3.12``) or a
tox env name (``env:py311``). Each must be met by at least one passing tox
env in the tox reports attached to the release's files. The reports are the
classic toxresult files: every finished ``devpi test`` run stores one, and
so does the original devpi-client, so both count; a run that never finished
(interrupted) has no report and counts for nothing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..store.indexconfig import ConfigError

_PY = re.compile(r"^py(\d)\.?(\d*)$")
_PLATFORM = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class EnvResult:
    """One tox env of one report: where it ran and whether it passed."""
    env: str
    platform: str
    python: str  # "3.12.1" or "" when unknown
    passed: bool


def normalize_requirements(value: Any) -> list[str]:
    """Index config normaliser: accepts a list or a comma separated string."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"push_requires must be a list, got {value!r}")
    out: list[str] = []
    for item in items:
        req = str(item).strip()
        if not req:
            continue
        describe(req)  # raises ConfigError for nonsense
        if req not in out:
            out.append(req)
    return out


def describe(req: str) -> str:
    """Human words for a requirement; ConfigError if it is not one."""
    if req.startswith("env:"):
        if not req[4:].strip():
            raise ConfigError("push_requires: 'env:' needs a tox env name, e.g. env:py311")
        return f"tox env {req[4:]}"
    m = _PY.match(req)
    if m:
        return f"python {m.group(1)}{'.' + m.group(2) if m.group(2) else ''}"
    if _PLATFORM.match(req) and not req.startswith("py"):
        return f"platform {req}"
    raise ConfigError(f"push_requires: unknown requirement {req!r} (use a platform such as linux, "
                      "a python version such as py312, or env:NAME)")


def satisfies(result: EnvResult, req: str) -> bool:
    if not result.passed:
        return False
    if req.startswith("env:"):
        return result.env == req[4:]
    m = _PY.match(req)
    if m:
        parts = result.python.split(".")
        if parts[0] != m.group(1):
            return False
        return not m.group(2) or (len(parts) > 1 and parts[1] == m.group(2))
    return result.platform.startswith(req)


def env_passed(env: dict[str, Any]) -> bool:
    """tox 4 reports carry result.success; older ones only the command return codes."""
    result = env.get("result")
    if isinstance(result, dict) and "success" in result:
        return result.get("success") is True and not result.get("skipped")  # "false" is no pass
    setup, test = env.get("setup"), env.get("test")
    setup = setup if isinstance(setup, list) else []
    test = test if isinstance(test, list) else []
    codes = [c.get("retcode") for c in [*setup, *test] if isinstance(c, dict)]
    return bool(codes) and any(isinstance(c, dict) for c in test) and all(str(rc) == "0" for rc in codes)


def env_python(env: dict[str, Any]) -> str:
    py = env.get("python")
    if not isinstance(py, dict):
        return ""
    info = py.get("version_info")
    if isinstance(info, list) and len(info) >= 2:
        return ".".join(str(x) for x in info[:3])
    return str(py.get("version") or "").split(" ")[0]


def env_results(report: dict[str, Any]) -> list[EnvResult]:
    """The run envs of one tox report (tox's own packaging envs, named '.pkg...', are skipped)."""
    platform = str(report.get("platform") or "")
    envs = report.get("testenvs")
    out: list[EnvResult] = []
    if not isinstance(envs, dict):  # anyone in acl_toxresult_upload may send any JSON
        return out
    for name, env in envs.items():
        if name.startswith(".") or not isinstance(env, dict):
            continue
        out.append(EnvResult(name, platform, env_python(env), env_passed(env)))
    return out


def parse_report(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


TRUST_KEY = "toxresult_trusted"  # index key: more users (or :AUTHENTICATED:) whose results count


def uploader(log: list[dict[str, Any]]) -> str | None:
    """Who uploaded a toxresult file: its first upload log entry (a push appends entries)."""
    for entry in log:
        if isinstance(entry, dict) and entry.get("what") == "upload":
            who = entry.get("who")
            return who if isinstance(who, str) and who else None
    return None


def trusts(config: dict[str, Any], owner: str, who: str | None) -> bool:
    """Whether a result uploaded by ``who`` may satisfy this index's push gate.

    ``acl_toxresult_upload`` stays ``:ANONYMOUS:`` by default (devpi-client's ``devpi test``
    relies on it), so anyone may attach a result: only those of the owner, of ``acl_upload``
    members and of ``toxresult_trusted`` members count. An anonymous result never does, even
    where a list says ``:ANONYMOUS:``; ``:AUTHENTICATED:`` trusts any logged-in user."""
    if who is None:
        return False
    if who in (owner, "root"):
        return True
    for principal in [*(config.get("acl_upload") or []), *(config.get(TRUST_KEY) or [])]:
        if principal == who or principal == ":AUTHENTICATED:":
            return True
    return False


def missing(requirements: list[str], results: list[EnvResult]) -> list[str]:
    return [req for req in requirements if not any(satisfies(r, req) for r in results)]
