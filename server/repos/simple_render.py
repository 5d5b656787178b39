"""The simple repository API: PEP 503 HTML and PEP 691 JSON, byte for byte.

Rendering is a pure function of a ``ProjectView`` and the link prefix, with a
fixed file order, so the same state always gives the same bytes (ETags and
mirrors of this server can trust them). PEP 592 yanking, PEP 629
api-version, PEP 658/714 core metadata and PEP 700 versions/size/upload-time
are all here.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from html import escape

from ..packaging.names import version_key
from .repository import Link, ProjectView

API_VERSION = "1.1"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ordered_links(links: list[Link]) -> list[Link]:
    """Newest version first, then by file name: deterministic and readable."""
    out = sorted(links, key=lambda link: link.filename)
    out.sort(key=lambda link: version_key(link.version), reverse=True)  # stable: keeps name order
    return out


def render_project_json(view: ProjectView, prefix: str) -> bytes:
    files = []
    for link in ordered_links(view.links):
        entry: dict = {"filename": link.filename, "url": prefix + link.path,
                       "hashes": {"sha256": link.sha256} if link.sha256 else {}}
        if link.requires_python:
            entry["requires-python"] = link.requires_python
        if link.yanked is not None:
            entry["yanked"] = link.yanked or True
        if link.core_metadata_sha256:
            entry["core-metadata"] = {"sha256": link.core_metadata_sha256}
            entry["dist-info-metadata"] = {"sha256": link.core_metadata_sha256}
        elif link.core_metadata:
            entry["core-metadata"] = entry["dist-info-metadata"] = True
        if link.size is not None:
            entry["size"] = link.size
        if link.upload_time is not None:
            entry["upload-time"] = _iso(link.upload_time)
        files.append(entry)
    doc = {"meta": {"api-version": API_VERSION}, "name": view.name, "files": files,
           "versions": view.versions}
    return json.dumps(doc, separators=(",", ":")).encode()


def render_project_html(view: ProjectView, prefix: str, title_prefix: str) -> bytes:
    out = [f'<!DOCTYPE html>\n<html lang="en"><head><meta name="pypi:repository-version" '
           f'content="{API_VERSION}"><title>{escape(title_prefix)}: links for {escape(view.name)}</title>'
           f'</head><body><h1>{escape(title_prefix)}: links for {escape(view.name)}</h1>\n']
    for note in view.notes:
        out.append(f"<p><strong>INFO:</strong> {escape(note)}</p>\n")
    for link in ordered_links(view.links):
        href = prefix + link.path
        if link.sha256:
            href += "#sha256=" + link.sha256
        attrs = f'href="{escape(href)}"'
        if link.requires_python:
            attrs += f' data-requires-python="{escape(link.requires_python)}"'
        if link.yanked is not None:
            attrs += f' data-yanked="{escape(link.yanked)}"'
        if link.core_metadata_sha256:
            attrs += (f' data-core-metadata="sha256={link.core_metadata_sha256}"'
                      f' data-dist-info-metadata="sha256={link.core_metadata_sha256}"')
        elif link.core_metadata:
            attrs += ' data-core-metadata="true" data-dist-info-metadata="true"'
        out.append(f"{escape(link.stage)} <a {attrs}>{escape(link.filename)}</a><br>\n")
    out.append("</body></html>\n")
    return "".join(out).encode()


def iter_list_json(chunks: Iterable[list[str]]) -> Iterator[bytes]:
    """The PEP 691 project list of the names in ``chunks`` (sorted slices, see namelists),
    made a slice at a time: never all of its bytes, nor an object per name, at once."""
    yield f'{{"meta":{{"api-version":"{API_VERSION}"}},"projects":['.encode()
    sep = ""
    for chunk in chunks:
        if not chunk:
            continue
        text = "\n".join(chunk)
        if "\\" in text or '"' in text:  # never in a normalised name; be exact anyway
            inner = ",".join(json.dumps({"name": n}, separators=(",", ":")) for n in chunk)
        else:
            inner = '{"name":"' + json.dumps(text)[1:-1].replace("\\n", '"},{"name":"') + '"}'
        yield (sep + inner).encode()
        sep = ","
    yield b"]}"


def iter_list_html(chunks: Iterable[list[str]], title_prefix: str) -> Iterator[bytes]:
    """The PEP 503 project list, made a slice at a time (see ``iter_list_json``)."""
    yield (f'<!DOCTYPE html>\n<html lang="en"><head><meta name="pypi:repository-version" '
           f'content="{API_VERSION}"><title>{escape(title_prefix)}: simple list</title></head><body>\n').encode()
    for chunk in chunks:
        if _NEEDS_ESCAPE.search("".join(chunk)) is None:
            yield "".join([f'<a href="{n}/">{n}</a><br>\n' for n in chunk]).encode()
        else:
            yield "".join([f'<a href="{escape(n)}/">{escape(n)}</a><br>\n' for n in chunk]).encode()
    yield b"</body></html>\n"


_NEEDS_ESCAPE = re.compile(r"""[&<>"']""")
