"""Who may create, modify and delete users and indexes: devpi's ``--restrict-modify``.

Without the option the server is as open as the original devpi: anyone may
create a user (``PUT /<name>``), and a user (or root) manages that user and
its indexes. With ``--restrict-modify=alice,:admins`` only root and the
listed users and ``:group``s may create, modify or delete users and indexes,
for any owner; everybody else may still change their own password, and
anonymous user creation is refused.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # parsed at start-up, before anything authenticates
    from .auth import Identity


def parse_restrict_modify(text: str | None) -> tuple[str, ...] | None:
    """``"alice, :admins"`` -> ("alice", ":admins"); None (no option) stays None: open."""
    if text is None:
        return None
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


class ModifyPolicy:
    def __init__(self, principals: Iterable[str] | None):
        self.principals = None if principals is None else frozenset(principals)

    @property
    def restricted(self) -> bool:
        return self.principals is not None

    def is_admin(self, ident: Identity | None) -> bool:
        """Root, or (when restricted) a listed user or member of a listed ``:group``."""
        if ident is None:
            return False
        if ident.user == "root":
            return True
        if self.principals is None:
            return False
        return ident.user in self.principals or any(f":{g}" in self.principals for g in ident.groups)

    def may_create_user(self, ident: Identity | None) -> bool:
        return self.principals is None or self.is_admin(ident)

    def may_manage(self, ident: Identity | None, owner: str) -> bool:
        """Modify or delete user ``owner``, or create, modify or delete its indexes."""
        if self.is_admin(ident):
            return True
        return self.principals is None and ident is not None and ident.user == owner

    def may_change_password(self, ident: Identity | None, owner: str) -> bool:
        """The one change a user may always make to themself, restricted or not."""
        return ident is not None and (ident.user == owner or self.is_admin(ident))
