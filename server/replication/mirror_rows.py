"""What a replica accepts as a mirror cache row from its primary: the exact columns, each bounded.

The primary is trusted with the data, not with the replica's health: a row is checked
here before anything of the answer that brought it is stored. A row with a column the
replica does not know, a value of the wrong type or beyond its column's size, a page
whose links are not a list of links, or a file path that is not a mirror path is refused
(``BadRow``), and with it the whole answer.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from ..mirror.page import relpath_for
from ..packaging.names import is_project_name, normalize_name

MAX_URL = 8192
MAX_PAGE_BYTES = 64 << 20  # mirror/repository.py's MAX_PAGE_BYTES: a page's links as JSON
MAX_PAGE_LINKS = 200_000  # mirror/repository.py's MAX_PAGE_LINKS
MAX_LIST_BYTES = 128 << 20  # mirror/repository.py's MAX_LIST_BYTES
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RELPATH = re.compile(r"\+[fe]/[^\x00-\x20\x7f\\]+")


class BadRow(ValueError):
    """The primary sent a mirror row a replica does not take."""


def _text(row: dict[str, Any], name: str, limit: int, optional: bool = False) -> None:
    value = row[name]
    if value is None and optional:
        return
    if not isinstance(value, str) or len(value) > limit:
        raise BadRow(f"{name} is not a text of at most {limit} characters")


def _int(row: dict[str, Any], name: str, optional: bool = False) -> None:
    value = row[name]
    if value is None and optional:
        return
    if type(value) is not int or not 0 <= value < 1 << 62:
        raise BadRow(f"{name} is not a non-negative integer")


def _time(row: dict[str, Any], name: str) -> None:
    value = row[name]
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise BadRow(f"{name} is not a time")


def _columns(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(row, dict) or set(row) != set(names):
        got = sorted(row)[:20] if isinstance(row, dict) else type(row).__name__
        raise BadRow(f"a row must have exactly the columns {', '.join(names)} (got {got})")
    return row


PAGE = ("index_id", "project", "url", "links", "etag", "last_modified", "serial", "fetched")
FILE = ("index_id", "relpath", "project", "filename", "sha256", "size", "created", "url")
LIST = ("index_id", "names", "etag", "serial", "fetched")


def check_page(row: Any, with_index: bool = True) -> dict[str, Any]:
    row = _columns(row, PAGE if with_index else PAGE[1:])
    if with_index:
        _int(row, "index_id")
    _text(row, "project", 200)
    if not is_project_name(row["project"]) or normalize_name(row["project"]) != row["project"]:
        raise BadRow(f"project {row['project'][:100]!r} is not a normalised project name")
    _text(row, "url", MAX_URL)
    _text(row, "links", MAX_PAGE_BYTES)
    _text(row, "etag", 400, optional=True)
    _text(row, "last_modified", 100, optional=True)
    _int(row, "serial", optional=True)
    _time(row, "fetched")
    try:
        links = json.loads(row["links"])
    except ValueError:
        raise BadRow("links is not JSON") from None
    if not isinstance(links, list) or len(links) > MAX_PAGE_LINKS:
        raise BadRow(f"links is not a list of at most {MAX_PAGE_LINKS} links")
    for link in links:
        if not isinstance(link, dict) or not isinstance(link.get("url"), str) or \
                not isinstance(link.get("filename"), str) or not link["filename"] or "/" in link["filename"]:
            raise BadRow("a link is not {url, filename, ...}")
        sha = link.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise BadRow("a link's sha256 is not 64 lowercase hex digits")
        if len(relpath_for(link)) > 600:  # type: ignore[arg-type]
            raise BadRow("a link's path is too long")
    return row


def check_file(row: Any, with_index: bool = True) -> dict[str, Any]:
    row = _columns(row, FILE if with_index else FILE[1:])
    if with_index:
        _int(row, "index_id")
    _text(row, "relpath", 600)
    if not _RELPATH.fullmatch(row["relpath"]) or "/../" in f"/{row['relpath']}/" or "//" in row["relpath"]:
        raise BadRow(f"relpath {row['relpath'][:100]!r} is not a mirror file path")
    _text(row, "project", 200)
    _text(row, "filename", 300)
    if not row["filename"] or "/" in row["filename"] or not row["relpath"].endswith("/" + row["filename"]):
        raise BadRow("filename is not the last part of relpath")
    if not isinstance(row["sha256"], str) or not _SHA256.fullmatch(row["sha256"]):
        raise BadRow("sha256 is not 64 lowercase hex digits")
    _int(row, "size")
    _time(row, "created")
    _text(row, "url", MAX_URL)
    return row


def check_list(row: Any) -> dict[str, Any]:
    row = _columns(row, LIST)
    _int(row, "index_id")
    _text(row, "names", MAX_LIST_BYTES)
    _text(row, "etag", 400, optional=True)
    _int(row, "serial", optional=True)
    _time(row, "fetched")
    return row


CHECKS = {"pages": check_page, "files": check_file, "lists": check_list}
