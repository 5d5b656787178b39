"""A server plugin for the start-up tests (loaded through DEVPI_SERVER_PLUGINS): the server's
assembly waits, in ``devpiserver_configure``, until the file named by ``DEVPI_TEST_START_GATE``
exists (at most a minute), so a test can see what the server answers before its application
is ready."""
from __future__ import annotations

import os
import time

from devpi.server.hooks import hookimpl

GATE_WAIT = 60.0


@hookimpl
def devpiserver_configure(core) -> None:
    gate = os.environ.get("DEVPI_TEST_START_GATE")
    deadline = time.monotonic() + GATE_WAIT
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
