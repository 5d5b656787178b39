"""Hosted documentation: members of a release's doc zip served as a static site.

Members are streamed straight from the stored zip (the blob named by its
sha256), piece by piece, looked up by exact name: nothing is unpacked, so no path in a zip
can reach the file system and no link can be followed. Zips were checked at
upload (``devpi.server.packaging.doc_zips.check_doc_zip``: no ``..``, absolute paths,
links, or zip bombs). The zip's directory is cached per sha256, since a
doc zip never changes.
"""
from __future__ import annotations

import mimetypes
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

CHUNK = 64 * 1024
ENTRY_OVERHEAD = 200  # bytes a cached name pair costs beyond its characters (two str objects, a dict slot)

# Documentation is user-supplied HTML with its own scripts: it runs in a
# sandbox (an opaque origin), so it cannot act as this server's pages. The sandbox
# is the boundary, not script-src: whoever uploads the zip can put any script in a
# file of it, so refusing inline scripts (which Sphinx themes use) protects nothing.
DOC_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
           "script-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'self'; "
           "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox allow-forms allow-downloads")


class DocZips:
    """Doc zips' member names, cached per sha256 (a doc zip never changes), bounded by count
    and by an estimate of their bytes: a zip may hold 50,000 members with long names."""

    def __init__(self, core: Any, max_cached: int = 64, max_bytes: int = 32 * 1024 * 1024):
        self.core = core
        self._names: OrderedDict[str, tuple[dict[str, str], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.max_cached = max_cached
        self.max_bytes = max_bytes

    def _names_of(self, sha256: str) -> dict[str, str]:
        """The zip's files by the path that serves them: ``./a/b.html`` (what some zip tools
        write) and ``a\\b.html`` serve as ``a/b.html``."""
        with self._lock:
            cached = self._names.get(sha256)
            if cached is not None:
                self._names.move_to_end(sha256)
                return cached[0]
        with zipfile.ZipFile(self.core.blobs.path(sha256)) as zf:
            names = {_served_as(i.filename): i.filename for i in zf.infolist() if not i.is_dir()}
        cost = sum(len(k) + len(v) + ENTRY_OVERHEAD for k, v in names.items())
        with self._lock:
            old = self._names.pop(sha256, None)
            if old is not None:
                self._bytes -= old[1]
            self._names[sha256] = (names, cost)
            self._bytes += cost
            while len(self._names) > 1 and (len(self._names) > self.max_cached or self._bytes > self.max_bytes):
                self._bytes -= self._names.popitem(last=False)[1][1]
        return names

    def resolve(self, sha256: str, path: str) -> tuple[str | None, bool]:
        """(member name to serve or None, whether the path names a directory without its slash)."""
        names = self._names_of(sha256)
        path = path.lstrip("/")
        if any(part in ("..", ".") for part in path.split("/")) or "\\" in path or "\x00" in path:
            return None, False
        if path == "" or path.endswith("/"):
            return names.get(path + "index.html"), False
        if path in names:
            return names[path], False
        if path + "/index.html" in names:
            return None, True
        return None, False

    def open_member(self, sha256: str, member: str) -> tuple[int, MemberStream] | None:
        """The member's size and its bytes in pieces, read from the zip as they are sent:
        never a whole member in memory (a zip stored before the upload limits existed may
        hold a member of any size). None if it cannot be read (encrypted, or compressed
        in a way zipfile does not know: refused at upload since)."""
        zf = zipfile.ZipFile(self.core.blobs.path(sha256))
        try:
            info = zf.getinfo(member)
            f = zf.open(info)
        except (KeyError, RuntimeError, NotImplementedError, zipfile.BadZipFile, ValueError):
            zf.close()
            return None
        except BaseException:
            zf.close()
            raise

        return info.file_size, MemberStream(zf, f)


class MemberStream:
    """A zip member as a WSGI body: iterated in pieces; ``close`` (which WSGI servers
    call, sent or not) closes the member and its zip."""

    def __init__(self, zf: zipfile.ZipFile, member: Any):
        self._zf, self._member = zf, member

    def __iter__(self) -> Iterator[bytes]:
        while data := self._member.read(CHUNK):
            yield data

    def close(self) -> None:
        self._member.close()
        self._zf.close()


def _served_as(member: str) -> str:
    return "/".join(part for part in member.replace("\\", "/").split("/") if part not in ("", "."))


def content_type(member: str) -> str:
    ctype = mimetypes.guess_type(member)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
        ctype += "; charset=utf-8"
    return ctype
