"""What a scoped token may do: a set of actions, optionally on named indexes only.

A password (or the login token ``devpi login`` gets for one) carries all of its user's
rights; a token created with ``devpi token create`` carries a :class:`TokenScope`. The
rule every permission check applies (``Core.within_scope``): outside its scope a
token has the rights of an anonymous client, never more, so a read-only CI token can
still install from public indexes but cannot upload anywhere.

No action lets a token change its user (password, email, tokens, the user's deletion):
those need the password.

``replicate`` is different from the others: it lets a replica follow this server
(server/replication/feed.py), and the feed carries every row of every index, so only an
admin's token may carry it, on no index in particular (api/tokens.py checks both).
"""
from __future__ import annotations

from dataclasses import dataclass

READ = "read"
UPLOAD = "upload"
TOXRESULT = "toxresult"
PUSH = "push"
DELETE = "delete"
INDEX_ADMIN = "index-admin"
REPLICATE = "replicate"
ACTIONS = (READ, UPLOAD, TOXRESULT, PUSH, DELETE, INDEX_ADMIN, REPLICATE)


@dataclass(frozen=True)
class TokenScope:
    token_id: str
    actions: frozenset[str]
    indexes: frozenset[str] | None = None  # "user/index" names; None: every index of the user's rights

    def allows(self, action: str, index: str | None) -> bool:
        """``index`` None: an action not on one index (creating an index, say)."""
        if action not in self.actions:
            return False
        return self.indexes is None or (index is not None and index in self.indexes)
