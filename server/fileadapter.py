"""``file://`` URLs for requests, so a mirror can front a local PEP 503 tree.

``mirror_url`` may be ``file:///srv/pypi/simple/`` (index config accepts
it, and pip users keep such trees). A directory answers with its
``index.html``; a missing path is a 404. Only GET and HEAD.
"""
from __future__ import annotations

import io
import mimetypes
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit

from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


class FileAdapter(BaseAdapter):
    def send(self, request: PreparedRequest, stream: bool = False, timeout=None, verify=True, cert=None,
             proxies=None) -> Response:
        resp = Response()
        resp.request = request
        resp.url = request.url or ""
        resp.headers = CaseInsensitiveDict()
        parts = urlsplit(resp.url)
        path = Path(unquote(parts.path))
        if path.is_dir():
            path = path / "index.html"
        if request.method not in ("GET", "HEAD"):
            resp.status_code, resp.raw = 405, io.BytesIO(b"")
        elif not path.is_file():
            resp.status_code, resp.raw = 404, io.BytesIO(b"not found\n")
        else:
            st = path.stat()
            resp.status_code = 200
            resp.headers["Content-Length"] = str(st.st_size)
            resp.headers["Last-Modified"] = formatdate(st.st_mtime, usegmt=True)
            ctype = "text/html" if path.suffix == ".html" else mimetypes.guess_type(path.name)[0]
            resp.headers["Content-Type"] = ctype or "application/octet-stream"
            resp.raw = io.BytesIO(b"") if request.method == "HEAD" else open(path, "rb")
        resp.reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[resp.status_code]
        return resp

    def close(self) -> None:
        pass
