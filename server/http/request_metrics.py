"""What the request log tells the metrics: route template, method, status, seconds.

The route is the template the router matched (``/<user>/<index>/+simple/<project>/``), never
the path: a path names indexes and projects (possibly read-restricted) and has no bound.
A cached simple page answered without routing (http/cached_page_lane.py) counts under the
template of the view that would have answered it.
"""
from __future__ import annotations

import re

from ..runtime.metrics import UNMATCHED, observe_request

_FILTER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*):[^>]*>")  # <user:re:[^+/][^/]*> -> <user>
SIMPLE_LIST = "/<user>/<index>/+simple/"
SIMPLE_PAGE = "/<user>/<index>/+simple/<project>/"
_templates: dict[str, str] = {}


def template_of(rule: str) -> str:
    """A route rule without its wildcards' filters (remembered: the rules are the code's)."""
    got = _templates.get(rule)
    if got is None:
        got = _FILTER.sub(r"<\1>", rule)
        if len(_templates) < 1024:
            _templates[rule] = got
    return got


def observe(environ: dict, status: str, seconds: float) -> None:
    """For the full application's request log."""
    route = environ.get("bottle.route")
    if route is not None:
        name = template_of(route.rule)
    elif "devpi.cached_page" in environ:
        name = SIMPLE_PAGE if environ["PATH_INFO"].count("/") > 4 else SIMPLE_LIST
    else:
        name = UNMATCHED
    observe_request(name, environ["REQUEST_METHOD"], status, seconds)


def observe_cached(environ: dict, status: str, seconds: float) -> None:
    """For the cached-page lane's request log: always a simple page or the project list."""
    observe_request(SIMPLE_PAGE if environ["PATH_INFO"].count("/") > 4 else SIMPLE_LIST,
                    environ["REQUEST_METHOD"], status, seconds)
