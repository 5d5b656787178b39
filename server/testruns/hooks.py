"""Test runs' hook implementations: the internal plugin server/plugins.py registers.

Apart from testruns/api.py (the views, the push gate, the SQL), which each hook imports
when it is first called: the plugin manager is made before the command line is parsed,
and a start answering from its snapshot of pages (http/startup_lane.py) must not import
the SQL layer or the web framework for it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..hooks import ConfigKey, hookimpl

if TYPE_CHECKING:
    import bottle

    from ..core import Core
    from ..store.catalog import IndexRow


@hookimpl
def devpiserver_indexconfig_keys(index_type: str) -> list[ConfigKey] | None:
    if index_type != "stage":
        return None
    from ..store import indexconfig
    from .gate import TRUST_KEY, normalize_requirements

    return [ConfigKey("push_requires", normalize_requirements, default=[], is_list=True),
            ConfigKey(TRUST_KEY, indexconfig._acl, is_list=True)]


@hookimpl
def devpiserver_configure(core: Core) -> None:
    extra = core.config.extra
    if "testrun_timeout" not in extra and os.environ.get("DEVPI_TESTRUN_TIMEOUT"):
        extra["testrun_timeout"] = float(os.environ["DEVPI_TESTRUN_TIMEOUT"])


@hookimpl
def devpiserver_add_routes(app: bottle.Bottle, core: Core) -> None:
    from .api import install

    install(app, core)


@hookimpl
def devpiserver_check_push(core: Core, src: Any, target: str) -> None:
    from .api import check_push_requires

    check_push_requires(core, src, target)


@hookimpl
def devpiserver_on_push_copy(tx: Any, src: Any, target: IndexRow, new_file_ids: dict[int, int]) -> None:
    from .api import copy_on_push

    copy_on_push(tx, src, target, new_file_ids)
