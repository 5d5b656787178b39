"""Which format a simple page is asked in (PEP 691 content negotiation).

Apart from rendering (repos/simple_render.py) so that the paths answering cached pages
(http/cached_page_lane.py, http/startup_lane.py) need neither rendering nor the models.
"""
from __future__ import annotations

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
LATEST_JSON = "application/vnd.pypi.simple.latest+json"
LATEST_HTML = "application/vnd.pypi.simple.latest+html"


def choose_format(accept: str | None, format_param: str | None = None) -> tuple[str, str]:
    """Return ("json"|"html", content type) for an Accept header (PEP 691 negotiation)."""
    if format_param:
        if format_param in (JSON_TYPE, LATEST_JSON, "json"):
            return "json", JSON_TYPE
        if format_param in (HTML_TYPE, LATEST_HTML):
            return "html", HTML_TYPE
        return "html", "text/html"
    if not accept:
        return "html", "text/html"
    best = ("html", "text/html", 0.0)
    for part in accept.split(","):
        fields = part.strip().split(";")
        mtype = fields[0].strip().lower()
        q = 1.0
        for param in fields[1:]:
            k, _, v = param.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if mtype in (JSON_TYPE, LATEST_JSON):
            cand = ("json", JSON_TYPE)
        elif mtype in (HTML_TYPE, LATEST_HTML):
            cand = ("html", HTML_TYPE)
        elif mtype in ("text/html", "text/*", "*/*"):
            cand = ("html", "text/html")
        else:
            continue
        if q > best[2]:
            best = (*cand, q)
    return best[0], best[1]
