"""Replication as an internal plugin (server/plugins.py registers it by name): its options,
the primary's feed routes, a replica's forwarding of writes (forward.py), start and stop. The role itself is
made in main.py before the database opens (a fresh replica takes its first serial from
the primary instead of initialising), and is ``core.replication``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..hooks import hookimpl

log = logging.getLogger("devpi.server.replication")

if TYPE_CHECKING:
    import bottle

    from ..core import Core


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400 * 365:
        raise argparse.ArgumentTypeError(f"must be seconds above 0, not {text!r}")
    return value


@hookimpl
def devpiserver_add_parser_options(parser: argparse.ArgumentParser) -> None:
    from .forward import SERIAL_WAIT
    from .role import BOOTSTRAP_BUDGET, DEFAULT_MAX_LAG

    group = parser.add_argument_group("replication (doc/replication.md)")
    group.add_argument("--primary-url", metavar="URL", default=None,
                       help="run as a read-only replica of the primary at URL (needs --replica-secret-file)")
    group.add_argument("--replica-secret-file", metavar="FILE", type=Path, default=None,
                       help="the secret shared by a primary and its replicas; on a primary it turns the "
                            "replication feed on")
    group.add_argument("--replica-start-wait", metavar="SECONDS", type=_seconds, default=BOOTSTRAP_BUDGET,
                       help=f"how long a fresh replica's start waits for the primary's first serial "
                            f"(default: {BOOTSTRAP_BUDGET:.0f})")
    group.add_argument("--replica-max-lag", metavar="SECONDS", type=_seconds, default=DEFAULT_MAX_LAG,
                       help=f"a replica's /+health says 503 when it is this far behind (default: "
                            f"{DEFAULT_MAX_LAG:.0f})")
    group.add_argument("--replica-write-wait", metavar="SECONDS", type=_seconds, default=SERIAL_WAIT,
                       help=f"how long a replica holds the answer to a write it forwarded until the write's "
                            f"serial has arrived (default: {SERIAL_WAIT:.0f}; then it answers with "
                            f"X-Devpi-Replica-Behind)")


def _role(core: Core) -> Any:
    return core.replication


@hookimpl
def devpiserver_add_routes(app: bottle.Bottle, core: Core) -> None:
    from . import feed
    from .role import Primary

    role = _role(core)
    if isinstance(role, Primary):  # a replica feeds nobody (its routes answer 404)
        feed.install(app, core, role.secret)


@hookimpl
def devpiserver_wsgi_middleware(core: Core) -> Any:
    from .role import Replica

    role = _role(core)
    if not isinstance(role, Replica):
        return None
    from .forward import Forwarder

    # at most half of the threads forward writes (each may wait for the primary): reads keep the rest
    return lambda app: Forwarder(app, core, role.primary_url, max_concurrent=core.config.threads // 2,
                                 serial_wait=role.write_wait, stats=role.writes)


@hookimpl
def devpiserver_configure(core: Core) -> None:
    from .role import Replica

    role = _role(core)
    if isinstance(role, Replica):
        role.start()
        return
    from ..store import sequences

    moved = sequences.advance(core.storage)  # a promoted replica's ids (doc/replication.md, "Promotion")
    if moved:
        log.warning("the id sequences of %s were behind their rows (a replica promoted to primary): "
                    "advanced past them", ", ".join(moved))


@hookimpl
def devpiserver_shutdown(core: Core) -> None:
    from .role import Replica

    role = _role(core)
    if isinstance(role, Replica):
        role.stop()
