"""Is the ``server`` extra installed?

``pip install devpi`` installs the client and, as plain packages, the server
and the web UI, but their third-party libraries come only with
``pip install 'devpi[server]'``. Without them the server would die on its
first import with a traceback that names SQLAlchemy or uvicorn; ``devpi
server`` and ``python -m devpi.server`` ask here when an import fails (never
on a normal start: reading metadata costs more than the server's own imports)
and print one line saying what to install. Only the standard library and ``packaging`` (a client
requirement) are imported, so this works in a client-only install.
"""
from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "devpi"
EXTRA = "server"
INSTALL_HINT = f"pip install '{DISTRIBUTION}[{EXTRA}]'"


def missing_server_requirements() -> list[str]:
    """Names of the ``server`` extra's distributions that are not installed.

    Read from the installed metadata of ``devpi``; a checkout run without
    being installed has none, and nothing is reported missing then (the
    imports will speak for themselves).
    """
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    missing = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": EXTRA}):
            continue
        if req.marker.evaluate({"extra": ""}):
            continue  # a base requirement (pip installed it with the client)
        try:
            metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(req.name)
    return missing


def missing_extra_message(missing: list[str]) -> str:
    """The one line shown instead of a traceback."""
    return (f"devpi server needs the {EXTRA} extra (not installed: {', '.join(missing)}): "
            f"{INSTALL_HINT}")


def server_extra_error(error: ModuleNotFoundError) -> str:
    """The message for a failed import of the server: one line when the extra is missing.

    Any other missing module (a bug, or a broken install) is raised again with
    its traceback, which is then the useful thing to see.
    """
    missing = missing_server_requirements()
    if not missing or (error.name or "").partition(".")[0] == "devpi":
        raise error
    return missing_extra_message(missing)
