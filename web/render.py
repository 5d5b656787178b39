"""Templates and safe rendering of user-supplied text.

Jinja2 autoescapes everything; the only HTML that reaches a page unescaped is
what readme_renderer produced (it cleans its output with nh3, dropping
scripts, event handlers and ``javascript:`` URLs). Rendered descriptions are
cached by content, since docutils is slow and releases are immutable.
"""
from __future__ import annotations

import functools
import hashlib
import re
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import Any

from markupsafe import Markup, escape

HERE = Path(__file__).parent
_MARKUP_NOISE = re.compile(r"(?m)^\s*#+|`{3,}\w*|\*\*|[|=~^]{2,}|-{3,}|\|")
_cache: OrderedDict[str, Markup] = OrderedDict()
_cache_lock = Lock()


@functools.lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(filesize=filesize, datetime=datetime_str, ago=ago, shorthash=shorthash,
                       highlight=highlight)
    env.globals.update(project_rows=project_rows)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def filesize(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def datetime_str(t: float | None) -> str:
    if not t:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def ago(t: float | None, now: float | None = None) -> str:
    if not t:
        return ""
    delta = max(0, (now or time.time()) - t)
    for span, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"),
                       (60, "minute")):
        if delta >= span:
            n = int(delta // span)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def shorthash(h: str | None) -> str:
    return (h or "")[:12]


def highlight(snippet: str) -> Markup:
    """Search snippets mark matches with \\x02 ... \\x03: escape everything, then mark."""
    snippet = _MARKUP_NOISE.sub(" ", snippet)  # descriptions are Markdown/reST source: drop its punctuation
    snippet = " ".join(snippet.split())
    out, open_ = [], False
    for part in re.split("([\x02\x03])", str(escape(snippet))):
        if part == "\x02" or part == "\x03":  # the text itself may hold these: keep marks paired
            if open_ == (part == "\x03"):
                out.append("</mark>" if open_ else "<mark>")
                open_ = not open_
        else:
            out.append(part)
    if open_:
        out.append("</mark>")
    return Markup("".join(out))


def project_rows(projects: list[Any], base: str) -> Markup:
    """The rows of an index's project table, escaped here with the stdlib.

    An index can hold thousands of projects; building these rows through
    the template (nine autoescapes per row) costs several times more than
    ``html.escape`` on a string, and this is the biggest page there is.
    """
    from html import escape as esc
    from urllib.parse import quote

    now = time.time()
    out = []
    for p in projects:
        href = esc(base + quote(p.name), quote=True)
        vhref = f"{href}/{esc(quote(p.version), quote=True)}"
        out.append(f'<tr><td><a href="{href}">{esc(p.display_name)}</a><td><a href="{vhref}">{esc(p.version)}</a>'
                   f"<td>{esc(p.summary)}<td>{ago(p.updated, now)}</tr>\n")
    return Markup("".join(out))


def render_description(text: str, content_type: str | None) -> Markup:
    """The long description as safe HTML: Markdown, reStructuredText or plain text."""
    if not text or not text.strip():
        return Markup("")
    ctype = (content_type or "").lower()
    key = hashlib.sha256(f"{ctype}\0{text}".encode()).hexdigest()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    html = _render(text, ctype)
    with _cache_lock:
        _cache[key] = html
        while len(_cache) > 500:
            _cache.popitem(last=False)
    return html


MAX_DEPTH = 100  # block quotes or HTML elements nested deeper: shown as plain text
_QUOTES = re.compile(r"^[ \t]*((?:>[ \t]*)+)", re.M)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*?(/?)>")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
         "track", "wbr"}


def _too_deep(text: str) -> bool:
    """Markdown nesting deeper than MAX_DEPTH (``>`` * 50,000 took 22 s to clean), judged
    from the source in one pass: quote markers at a line's start, and open HTML tags."""
    if any(m.group(1).count(">") > MAX_DEPTH for m in _QUOTES.finditer(text)):
        return True
    depth = 0
    for m in _TAG.finditer(text):
        if m.group(3) or m.group(2).lower() in _VOID:
            continue
        depth = max(depth - 1, 0) if m.group(1) else depth + 1
        if depth > MAX_DEPTH:
            return True
    return False


def _render(text: str, ctype: str) -> Markup:
    rendered: str | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if ctype.startswith("text/markdown") and _too_deep(text):
                rendered = None  # cleaning deeply nested HTML takes time quadratic in its depth
            elif ctype.startswith("text/markdown"):
                from readme_renderer import markdown

                variant = "CommonMark" if "variant=commonmark" in ctype.replace(" ", "") else "GFM"
                rendered = markdown.render(text, variant=variant)
            elif ctype.startswith("text/plain"):
                rendered = None
            else:  # text/x-rst, or unspecified (PyPI's default is reST)
                from readme_renderer import rst

                rendered = rst.render(text, stream=_NullStream())
        except Exception:
            rendered = None
    if rendered is None:
        rendered = f'<pre class="plain">{escape(text)}</pre>'
    return Markup(rendered)


class _NullStream:
    """docutils warnings go nowhere (a broken reST falls back to plain text)."""

    def write(self, _data: str) -> None:
        pass
