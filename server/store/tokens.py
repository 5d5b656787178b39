"""Rows of the ``tokens`` table: scoped API tokens, their secrets only as hashes.

Creating and revoking a token are write transactions with a changelog entry (kind
``token``), like any change to a user; ``last_used`` is bookkeeping and written without
a serial (``touch``). What the token string looks like and how it is checked is
accounts/api_tokens.py's business.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from . import schema
from .storage import WriteTx, dumps, loads


@dataclass(frozen=True)
class TokenRow:
    id: str
    owner: str
    secret_hash: str
    actions: tuple[str, ...]
    indexes: tuple[str, ...] | None  # None: any index
    expires: float
    description: str
    created: float
    last_used: float | None

    def public(self) -> dict[str, Any]:
        """What listing a token shows: never the secret's hash."""
        return {"id": self.id, "user": self.owner, "allowed": list(self.actions),
                "indexes": list(self.indexes) if self.indexes is not None else None,
                "expires": int(self.expires), "description": self.description,
                "created": int(self.created),
                "last_used": int(self.last_used) if self.last_used is not None else None}


def row_to_token(row: Any) -> TokenRow:
    """A row as selected from ``tokens`` (all columns, in table order)."""
    indexes = loads(row.indexes) if row.indexes is not None else None
    return TokenRow(row.id, row.owner, row.secret_hash, tuple(loads(row.actions) or ()),
                    tuple(indexes) if indexes is not None else None, float(row.expires),
                    row.description or "", float(row.created),
                    float(row.last_used) if row.last_used is not None else None)


def get_token(conn: Connection, token_id: str) -> TokenRow | None:
    row = conn.execute(select(schema.tokens).where(schema.tokens.c.id == token_id)).first()
    return row_to_token(row) if row else None


def list_tokens(conn: Connection, owner: str) -> list[TokenRow]:
    q = select(schema.tokens).where(schema.tokens.c.owner == owner).order_by(schema.tokens.c.created,
                                                                              schema.tokens.c.id)
    return [row_to_token(r) for r in conn.execute(q)]


def count_tokens(conn: Connection, owner: str) -> int:
    return len(conn.execute(select(schema.tokens.c.id).where(schema.tokens.c.owner == owner)).all())


def create_token(tx: WriteTx, token: TokenRow) -> None:
    tx.conn.execute(insert(schema.tokens).values(
        id=token.id, owner=token.owner, secret_hash=token.secret_hash, actions=dumps(list(token.actions)),
        indexes=dumps(list(token.indexes)) if token.indexes is not None else None, expires=token.expires,
        description=token.description, created=token.created, last_used=None))
    tx.record("token", user=token.owner, op="create", token=token.id)


def delete_token(tx: WriteTx, owner: str, token_id: str) -> bool:
    """Revoke one of ``owner``'s tokens; False when there is no such token of theirs."""
    result = tx.conn.execute(delete(schema.tokens).where(schema.tokens.c.id == token_id,
                                                         schema.tokens.c.owner == owner))
    if not result.rowcount:
        return False
    tx.record("token", user=owner, op="delete", token=token_id)
    return True


def delete_user_tokens(tx: WriteTx, owner: str) -> None:
    """Every token of a user being deleted (the foreign key cascades too; this says so in
    the changelog and does not depend on the engine enforcing it)."""
    result = tx.conn.execute(delete(schema.tokens).where(schema.tokens.c.owner == owner))
    if result.rowcount:
        tx.record("token", user=owner, op="delete-all")


def touch(conn: Connection, token_id: str, now: float, older_than: float) -> None:
    """Set ``last_used`` unless it is already newer than ``older_than`` (no serial)."""
    col = schema.tokens.c.last_used
    conn.execute(update(schema.tokens).where(schema.tokens.c.id == token_id)
                 .where((col.is_(None)) | (col < older_than)).values(last_used=now))
