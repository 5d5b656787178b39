"""Parts of the server that plug into the core at start-up.

Each listed module, if present, has ``setup(core)`` which registers what it
adds: a mirror factory, commit listeners, push checks, config keys, routes
(via ``core.config.extra["route_hooks"]``). The core stays ignorant of them.
"""
from __future__ import annotations

import importlib
import logging

from .core import Core

log = logging.getLogger("devpi.server")
EXTENSIONS = ("devpi.server.mirror.extension", "devpi.server.testruns.api")


def load_extensions(core: Core) -> None:
    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.setup(core)
