"""Reaching into a test server's database for what no API does: expiring a token now."""
from __future__ import annotations

import time

from sqlalchemy import create_engine, text


def expire_token(storage_url: str, token_id: str) -> None:
    """Set a token's expiry into the past behind the server's back (no waiting for a clock)."""
    if storage_url.startswith("postgresql://"):
        storage_url = "postgresql+psycopg://" + storage_url[len("postgresql://"):]
    engine = create_engine(storage_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE tokens SET expires = :t WHERE id = :id"),
                         {"t": time.time() - 1, "id": token_id})
    finally:
        engine.dispose()
