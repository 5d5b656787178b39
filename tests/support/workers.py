"""Helpers for `devpi server --workers N` tests: reach each worker on purpose.

A keep-alive connection stays with the worker that accepted it, so a ``requests.Session``
whose ``/+status`` names a worker's pid talks to that worker until it is closed.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests


def status(session: requests.Session, url: str) -> dict:
    r = session.get(f"{url}/+status", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def _status_or_none(session: requests.Session, url: str) -> dict | None:
    """None for a connection closed by a worker stopping just then (SIGHUP, a restart)."""
    try:
        return status(session, url)
    except requests.ConnectionError:
        return None


def race(fns: list[Callable[[], Any]]) -> list[Any]:
    """Run the callables at once (each in a thread, released together); their results."""
    results: list = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def pinned_sessions(url: str, count: int = 2, rounds: int = 20) -> list[requests.Session]:
    """``count`` sessions, each on a connection to a different worker. Connections are made
    in bursts: an idle worker takes whatever comes, so one at a time may all land on one."""
    found: dict[int, requests.Session] = {}
    for _ in range(rounds):
        burst = [requests.Session() for _ in range(8)]
        answers = race([lambda s=s: _status_or_none(s, url) for s in burst])
        for session, st in zip(burst, answers, strict=True):
            if st is None or st["pid"] in found or len(found) == count:
                session.close()
            else:
                found[st["pid"]] = session
        if len(found) == count:
            return list(found.values())
    raise AssertionError(f"requests reached only the workers {sorted(found)}")


def worker_pids(url: str, count: int = 2) -> dict[int, int]:
    """worker number -> pid, from sessions landing on every worker."""
    pids = {}
    for s in pinned_sessions(url, count):
        st = status(s, url)
        pids[st["worker"]] = st["pid"]
        s.close()
    return pids
