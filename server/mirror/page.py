"""Upstream simple pages in, mirror links out: pure functions, no I/O.

An upstream page (PEP 691 JSON or PEP 503 HTML) becomes a list of plain
dicts (``UpstreamLink``: absolute upstream URL, hash, PEP 592/658/700 data),
which is what the mirror stores as JSON. ``to_link`` turns one into the
``Link`` our pages render: its path is on this server, keyed by the upstream
sha256 as devpi does (``+f/<h[:3]>/<h[3:16]>/<name>``), or ``+e/...`` built
from the upstream URL when upstream gives no hash.
"""
from __future__ import annotations

import codecs
import html
import json
import re
from html.parser import HTMLParser
from typing import Any, TypedDict
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from ..packaging.names import InvalidName, check_filename, normalize_name, split_dist_filename
from ..repos.namelists import SortedSlices
from ..repos.repository import Link

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# devpi's own Accept: JSON first, HTML understood too.
ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.01")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


class PageError(ValueError):
    """Upstream answered 200 with something that is not a simple page."""


class UpstreamLink(TypedDict, total=False):
    filename: str
    url: str  # absolute upstream URL, no fragment
    version: str
    sha256: str | None
    md5: str | None  # set only when upstream gives an md5 and no sha256 (older indexes)
    requires_python: str | None
    yanked: str | None  # None: not yanked; "" or the reason
    core_metadata_sha256: str | None
    core_metadata: bool  # upstream serves <url>.metadata (with or without a hash)
    size: int | None
    upload_time: float | None


LAST_RENDERABLE = 253402300800.0  # 10000-01-01 UTC: datetime ends before


def _usable_name(filename: str) -> bool:
    """A file name is one path segment: ``a/b``, ``..`` and the like would make our links
    point elsewhere on this server."""
    try:
        check_filename(filename)
    except InvalidName:
        return False
    return True


def _sha256_of(hashes: Any) -> str | None:
    if isinstance(hashes, dict):
        value = hashes.get("sha256")
        if isinstance(value, str) and _SHA256.match(value.lower()):
            return value.lower()
    return None


def _md5_of(hashes: Any) -> str | None:
    """Only consulted without a sha256: then the md5 is what checks the download."""
    if isinstance(hashes, dict):
        value = hashes.get("md5")
        if isinstance(value, str) and _MD5.match(value.lower()):
            return value.lower()
    return None


def _version_of(filename: str) -> str:
    try:
        return split_dist_filename(filename)[1]
    except ValueError:
        return ""


def _yanked(value: Any) -> str | None:
    if value is None or value is False:
        return None
    return value if isinstance(value, str) else ""


def _iso_to_unix(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    from datetime import datetime

    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        return None
    return ts if 0 <= ts < LAST_RENDERABLE else None  # a time our pages can show again


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise PageError("page is not UTF-8") from None


def is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in (JSON_TYPE, "application/json")


def parse_project_page(body: bytes, content_type: str | None, page_url: str) -> list[UpstreamLink]:
    """The links of an upstream project page; relative URLs resolve against page_url.
    Links this server could not or must not fetch are left out (see ``_fetchable``)."""
    links = _parse_json(body, page_url) if is_json(content_type) else _parse_html(body, page_url)
    return [link for link in links if _fetchable(link["url"], page_url)]


def _fetchable(url: str, page_url: str) -> bool:
    """http(s) links, and ``file:`` links only on a page that is itself a local file: an
    upstream page must not make this server read its own files (``javascript:``,
    ``data:`` and the like are no files at all)."""
    head = url[:8].lower()  # (no urlsplit: it runs for every link of every page fetched)
    return head.startswith(("http://", "https://")) or (head.startswith("file:") and page_url.startswith("file:"))


def _parse_json(body: bytes, page_url: str) -> list[UpstreamLink]:
    try:
        doc = json.loads(_decode(body))
    except ValueError:
        raise PageError("page is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise PageError("JSON page has no 'files' list")
    out: list[UpstreamLink] = []
    for f in doc["files"]:
        if not isinstance(f, dict) or not isinstance(f.get("filename"), str) or not isinstance(f.get("url"), str):
            continue
        try:
            url, _ = urldefrag(urljoin(page_url, f["url"]))
        except ValueError:  # not a URL at all ("http://[bad/...")
            continue
        if not _usable_name(f["filename"]):
            continue
        meta = f.get("core-metadata", f.get("dist-info-metadata"))
        size = f.get("size")
        sha256 = _sha256_of(f.get("hashes"))
        link = UpstreamLink(
            filename=f["filename"], url=url, version=_version_of(f["filename"]),
            sha256=sha256,
            requires_python=f.get("requires-python") if isinstance(f.get("requires-python"), str) else None,
            yanked=_yanked(f.get("yanked")),
            core_metadata_sha256=_sha256_of(meta), core_metadata=bool(meta),
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            upload_time=_iso_to_unix(f.get("upload-time")))
        if sha256 is None and (md5 := _md5_of(f.get("hashes"))):
            link["md5"] = md5
        out.append(link)
    return out


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current = dict(attrs)
            self._text = []
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((self._current, "".join(self._text).strip()))
            self._current = None


Anchor = tuple[dict[str, str | None], str]  # (attributes, text)

# What the standard library's parser reads differently from a flat run of tags and text:
# comments, CDATA and other declarations (a doctype is fine), processing instructions,
# raw-text elements, and a <base> that moves every relative link.
_NEEDS_PARSER = re.compile(r"<(?:!(?!doctype)|\?|script|style|base)", re.I)
_TAG = re.compile(r"""<[a-zA-Z](?:[^>"']|"[^"]*"|'[^']*')*>""")
_A_START = re.compile(r"<a[\s/>]", re.I)
_A_ELEMENT = re.compile(r"""<a(?=[\s/>])((?:[^>"']|"[^"]*"|'[^']*')*)>([^<]*)</a\s*>""", re.I)
_ATTR = re.compile(r"""([^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*))?""")


def _fast_anchors(text: str) -> list[Anchor] | None:
    """The anchors of a flat PEP 503 page, read with regular expressions; None when the
    page has anything they might read differently from ``_Anchors`` (which then parses it).

    The standard library's HTML parser takes about three times as long (38 against 12 µs
    for a small page; a tenth of a cold page's Python time in the worker). The result is
    the parser's: attribute names lower-cased, values and
    text with character references resolved, a value-less attribute as None, the last of
    a repeated attribute kept (as ``dict(attrs)`` does)."""
    if _NEEDS_PARSER.search(text):
        return None
    if any("<" in tag.group()[1:] for tag in _TAG.finditer(text)):  # "<" in a quoted value
        return None
    anchors: list[Anchor] = []
    for match in _A_ELEMENT.finditer(text):
        raw = match.group(1)
        if raw.endswith("/"):  # <a .../> is an empty element to the parser
            return None
        attrs: dict[str, str | None] = {}
        for name, rest, value in _ATTR.findall(raw):
            if not rest:
                attrs[name.lower()] = None
                continue
            if value[:1] in ("'", '"'):
                value = value[1:-1]
            attrs[name.lower()] = html.unescape(value)
        anchors.append((attrs, html.unescape(match.group(2)).strip()))
    if len(anchors) != len(_A_START.findall(text)):  # an anchor with markup inside, or unclosed
        return None
    return anchors


def _anchors(body: bytes, page_url: str) -> tuple[list[Anchor], str]:
    text = _decode(body)
    if "<" not in text or "\x00" in text:
        raise PageError("page is not HTML")
    fast = _fast_anchors(text)
    if fast is not None:
        return fast, page_url
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    try:
        return parser.anchors, urljoin(page_url, parser.base) if parser.base else page_url
    except ValueError:  # a <base href> that is no URL: links resolve against the page
        return parser.anchors, page_url


def _html_hash(value: str | None) -> tuple[bool, str | None]:
    """data-core-metadata: "true" or "sha256=<hex>"."""
    if value is None or value.lower() == "false":
        return False, None
    algo, _, digest = value.partition("=")
    return True, digest.lower() if algo == "sha256" and _SHA256.match(digest.lower()) else None


def _parse_html(body: bytes, page_url: str) -> list[UpstreamLink]:
    anchors, base = _anchors(body, page_url)
    out: list[UpstreamLink] = []
    for attrs, text in anchors:
        href = attrs.get("href")
        if not href:
            continue
        try:
            url, fragment = urldefrag(urljoin(base, href))
            filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or text
        except ValueError:  # not a URL at all ("http://[bad/...")
            continue
        if not _usable_name(filename):
            continue
        algo, _, digest = fragment.partition("=")
        digest = digest.lower()
        has_meta, meta_sha = _html_hash(attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata")))
        link = UpstreamLink(
            filename=filename, url=url, version=_version_of(filename),
            sha256=digest if algo == "sha256" and _SHA256.match(digest) else None,
            requires_python=attrs.get("data-requires-python") or None,
            yanked=attrs["data-yanked"] or "" if "data-yanked" in attrs else None,
            core_metadata_sha256=meta_sha, core_metadata=has_meta, size=None, upload_time=None)
        if algo == "md5" and _MD5.match(digest):
            link["md5"] = digest
        out.append(link)
    return out


_LIST_ANCHOR = re.compile(r"<a(?=[\s>])[^>]*>([^<]*)</a\s*>", re.I)
_LIST_JSON_NAME = re.compile(r'"name"\s*:\s*"([^"\\]*)"')
_VALID_NORMALIZED = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$", re.M)


def parse_project_list(body: bytes, content_type: str | None, page_url: str) -> str:
    """Project names of an upstream /simple/ list, normalised, sorted, unique, joined by
    newlines: one string instead of a Python object per name (a list of 700,000 names
    holds 14 MB so, several times that as a list of str).

    The names are read with regular expressions, not a JSON or HTML parser: a parser
    builds an object per project (a dict, its attributes), hundreds of MB for a big index
    and six times slower. A regular expression cannot be misled into anything the
    upstream could not list anyway (it chooses the names); a name that is no valid
    project name after normalising (PEP 503/508: letters, digits, ``-_.``) is left out."""
    reader = ProjectListReader(content_type)
    try:
        reader.feed(body)
        return reader.finish()
    except NeedsParser:
        found = [t for _, t in _anchors(body, page_url)[0]]
        slices = SortedSlices()
        slices.add(_valid_normalized(found))
        return slices.text()


class NeedsParser(Exception):
    """The HTML list has markup only a real parser reads right (comments, scripts, a base
    element): read the whole body and parse it (``parse_project_list``)."""


class ProjectListReader:
    """``parse_project_list`` fed the body piece by piece as it arrives: only the names of
    one piece exist as objects at a time (see namelists), never the whole body, its text
    or a list of every name. Pieces are cut where no name can straddle the cut: before
    the last ``"name"`` key (JSON) or the last ``<a`` (HTML)."""

    PIECE = 1 << 20  # decoded text worked on at once

    def __init__(self, content_type: str | None):
        self.json = is_json(content_type)
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._pending = ""
        self._started = False
        self._seen_projects = False
        self._tail = ""  # the end of the text before, to find a marker cut in two
        self._slices = SortedSlices()

    def feed(self, data: bytes) -> None:
        try:
            text = self._pending + self._decoder.decode(data)
        except UnicodeDecodeError:
            raise PageError("page is not UTF-8") from None
        if len(text) < self.PIECE:
            self._pending = text
            return
        self._pending = ""
        self._work(text, final=False)

    def finish(self) -> str:
        try:
            text = self._pending + self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise PageError("page is not UTF-8") from None
        self._pending = ""
        self._work(text, final=True)
        if self.json and not self._seen_projects:
            raise PageError("JSON project list has no 'projects' list")
        if not self.json and not self._started:
            raise PageError("page is not HTML")
        return self._slices.text()

    def _work(self, text: str, final: bool) -> None:
        if not self._started:
            stripped = text.lstrip()
            if not stripped and not final:
                return
            if self.json and not stripped.startswith("{"):
                raise PageError("JSON project list has no 'projects' list")
            if not self.json and ("<" not in text or "\x00" in text):
                raise PageError("page is not HTML")
            self._started = True
        seen = self._tail + text
        if self.json:
            self._seen_projects = self._seen_projects or '"projects"' in seen
            cut = len(text) if final else text.rfind('"name"')
            if cut < 0:  # no name starts here: keep only what could begin one
                cut = max(0, len(text) - 5)
            found = _LIST_JSON_NAME.findall(text, 0, cut)
        else:
            if "\x00" in text:
                raise PageError("page is not HTML")
            if _NEEDS_PARSER.search(seen) is not None:
                raise NeedsParser()
            cut = len(text) if final else max(text.rfind("<a"), text.rfind("<A"))  # anchors as _LIST_ANCHOR
            if cut < 0:
                cut = max(0, len(text) - 1)
            found = _LIST_ANCHOR.findall(text, 0, cut)
        self._tail = text[max(0, cut - 16):cut]
        self._pending = text[cut:]
        del text, seen
        self._slices.add(_valid_normalized(found))


def _valid_normalized(found: list[str]) -> list[str]:
    """The valid project names among raw list entries, normalised (PEP 503)."""
    joined = "\n".join(found)
    if "&" in joined:
        joined = html.unescape(joined)
    joined = joined.replace(" ", "").replace("_", "-").replace(".", "-").lower()
    while "--" in joined:  # PEP 503: a run of -_. is one "-" (str.replace: a regex costs 25 times more)
        joined = joined.replace("--", "-")
    return _VALID_NORMALIZED.findall(joined)


def redact(url: str) -> str:
    """The URL without user:password (mirror_url may embed credentials): for logs and messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def relpath_for(link: UpstreamLink) -> str:
    """Where this server serves the file: +f/ by upstream sha256, else +e/ by upstream URL."""
    sha = link.get("sha256")
    if sha:
        return f"+f/{sha[:3]}/{sha[3:16]}/{link['filename']}"
    parts = urlsplit(redact(link["url"]))
    dirs = "_".join(p for p in parts.path.split("/")[:-1] if p)
    key = _SAFE.sub("_", f"{parts.scheme}_{parts.netloc}_{dirs}".rstrip("_"))
    return f"+e/{key}/{link['filename']}"


def to_link(link: UpstreamLink, fullname: str) -> Link:
    return Link(
        filename=link["filename"], path=f"{fullname}/{relpath_for(link)}", version=link.get("version") or "",
        stage=fullname, sha256=link.get("sha256"), requires_python=link.get("requires_python"),
        yanked=link.get("yanked"), core_metadata_sha256=link.get("core_metadata_sha256"),
        core_metadata=bool(link.get("core_metadata")),
        size=link.get("size"), upload_time=link.get("upload_time"))


def project_of_filename(filename: str) -> str | None:
    """The normalised project a distribution file name belongs to (to find its page)."""
    try:
        return normalize_name(split_dist_filename(filename)[0])
    except ValueError:
        return None
