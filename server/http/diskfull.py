"""A full disk is the server's condition, not a bug: 507 with a message that says so.

Any write may meet it (a blob's temp file, its fsync, the database's journal). The
writer that failed cleans up after itself (``BlobWriter`` discards its temp file),
and nothing is cached about it, so the first upload after space is freed works.
"""
from __future__ import annotations

import errno

MESSAGE = "no space left on the server"
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException | None) -> bool:
    """True if ``exc``, or what caused it (SQLAlchemy wraps the driver's error), is a full
    disk or an exceeded quota."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or getattr(exc, "sqlstate", None) == PG_DISK_FULL:
            return True
        if "database or disk is full" in str(exc):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False
