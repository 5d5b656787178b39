"""The stored password hash as the database has it now (several processes on PostgreSQL, or
the workers of ``devpi server --workers N`` on SQLite).

A process learns of another process's commits from its changelog poller, up to
half a second late; an old password or token must not work meanwhile. So on
PostgreSQL every credential check reads the user's hash: one primary-key
lookup in one round trip (autocommit, no pre-ping, a statement psycopg
prepares after a few uses), measured at 0.1-0.2 ms against 1-2 ms for a
pooled read transaction. Anonymous requests never get here.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import create_engine

log = logging.getLogger("devpi.server.auth")
QUERY = "SELECT pwhash FROM users WHERE name = %s"


class LivePwhash:
    def __init__(self, engine: Any):
        # SQLite (the workers of one ``--workers N`` server): its driver's parameters are ``?``,
        # and a plain SELECT outside a transaction reads the last commit of any process
        self._qmark = engine.dialect.name == "sqlite"
        if self._qmark:
            self._engine = create_engine(engine.url, pool_size=4, max_overflow=28,
                                         connect_args={"check_same_thread": False, "timeout": 60})
        else:
            self._engine = create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_size=4, max_overflow=28,
                                         pool_pre_ping=False)

    def __call__(self, user: str) -> str | None:
        row = self.fetchone(QUERY, (user,))
        return row[0] if row else None

    def fetchone(self, query: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a query read now (also the scoped tokens' rows: accounts/api_tokens.py)."""
        if self._qmark:
            query = query.replace("%s", "?")
        for attempt in (1, 2):  # a pooled connection the database closed fails once
            conn = self._engine.raw_connection()
            try:
                row = conn.driver_connection.execute(query, params).fetchone()
            except Exception:
                conn.invalidate()
                if attempt == 2:
                    raise
                log.debug("pwhash read failed; retrying on a new connection", exc_info=True)
                continue
            finally:
                conn.close()
            return row
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._engine.dispose()
