"""Test-run summary for ``devpi list``: a matrix of tox env x platform -> passed/failed/running.

``devpi list NAME`` calls ``matrix_lines`` once per shown version. It reads
``GET /<index>/<name>/<version>/+testruns`` (the live runs ``devpi test``
records); servers without that API simply show no matrix. The newest run
decides a cell, so a fix that passes after a failure shows as passed, and a
run in progress shows as running.
"""
from __future__ import annotations

from typing import Any

from devpi.client.hub import Hub


def fetch_runs(hub: Hub, index_url: str, name: str, version: str) -> list[dict[str, Any]]:
    reply = hub.request("GET", f"{index_url}/{name}/{version}/+testruns", check=False)
    if reply.status_code != 200 or not isinstance(reply.result, list):
        return []
    return reply.result


def matrix(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """{(env, python X.Y): {platform: status}}, newest run per cell winning."""
    cells: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}
    for run in runs:
        envs = run.get("envs") or {"?": {"status": run.get("status"), "python": run.get("python", "")}}
        for env, data in envs.items():
            python = ".".join(str(data.get("python") or run.get("python") or "?").split(".")[:2])
            status = data.get("status") or run.get("status") or "?"
            if status == "unknown":
                status = run.get("status") or "?"
            row = cells.setdefault((env, python), {})
            started = float(run.get("started") or 0)
            platform = str(run.get("platform") or "?")
            if platform not in row or row[platform][0] <= started:
                row[platform] = (started, status)
    return {key: {p: s for p, (_, s) in row.items()} for key, row in sorted(cells.items())}


def format_matrix(cells: dict[tuple[str, str], dict[str, str]], indent: str = "  ") -> list[str]:
    if not cells:
        return []
    platforms = sorted({p for row in cells.values() for p in row})
    labels = [f"{env} (py{python})" for env, python in cells]
    width = max(len("tests"), *(len(label) for label in labels))
    colw = max(12, *(len(p) for p in platforms))
    lines = [f"{indent}{'tests':<{width}}  " + "  ".join(f"{p:<{colw}}" for p in platforms)]
    for label, row in zip(labels, cells.values(), strict=True):
        lines.append(f"{indent}{label:<{width}}  " + "  ".join(f"{row.get(p, '-'):<{colw}}" for p in platforms))
    return [line.rstrip() for line in lines]


def matrix_lines(hub: Hub, index_url: str, name: str, version: str, indent: str = "  ") -> list[str]:
    """What ``devpi list`` prints under a version: nothing when it was never tested."""
    return format_matrix(matrix(fetch_runs(hub, index_url, name, version)), indent)
