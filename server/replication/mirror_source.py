"""A replica's mirrors ask the primary (mirror_feed.py) for what they lack, never the upstream.

This is ``core.mirror_source`` on a replica (the protocol is mirror/through_primary.py's
``MirrorSource``). The primary fetches from its upstream with its own policy, hash checks
and bounds; the replica takes its stored row and then the bytes by sha256 through the blob
fetcher (hash-checked while written). Each failure becomes a JSON error for the request
(404 when the primary or its upstream has no such thing, 503 when the primary cannot be
reached, 502 for anything else the primary answers) and is named in /+status; nothing of
a failed fetch is stored.
"""
from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import requests

from ..api.httpkit import APIError
from .mirror_rows import BadRow, check_file, check_page
from .secret import HEADER

if TYPE_CHECKING:
    from .blob_fetch import BlobFetcher
    from .mirror_sync import MirrorSyncState
    from .state import ReplicaState

CONNECT_TIMEOUT = 10.0
PAGE_TIMEOUT = 120.0  # seconds to wait for a page the primary may fetch from its upstream first
FILE_TIMEOUT = 3600.0  # a file the primary downloads first (its --mirror-download-timeout's default)
MAX_ANSWER = 80 << 20  # bytes of one answer (a page row is at most 64 MiB of links)


class MirrorThroughPrimary:
    def __init__(self, primary_url: str, secret: str, replica: ReplicaState, sync: MirrorSyncState,
                 blobs: BlobFetcher):
        self.primary_url = primary_url.rstrip("/")
        self.secret = secret
        self.replica = replica
        self.sync = sync
        self.blobs = blobs
        self._session = requests.Session()

    def reachable(self) -> bool:
        return self.replica.stale_since is None

    def page(self, index: str, project: str) -> dict[str, Any] | None:
        doc = self._ask(f"{index}/+page/{urllib.parse.quote(project, safe='')}", PAGE_TIMEOUT,
                        f"{index} page {project}")
        row = doc.get("page")
        if row is None:
            return None
        try:
            return check_page(row, with_index=False)
        except BadRow as e:
            raise self._refused(f"{index} page {project}", f"refused from the primary: {e}") from None

    def file(self, index: str, relpath: str) -> dict[str, Any]:
        what = f"{index}/{relpath}"
        doc = self._ask(f"{index}/+file/{urllib.parse.quote(relpath, safe='/+')}", FILE_TIMEOUT, what)
        try:
            return check_file(doc.get("file"), with_index=False)
        except BadRow as e:
            raise self._refused(what, f"refused from the primary: {e}") from None

    def blob(self, sha256: str, size: int) -> None:
        self.blobs.fetch_now(sha256, size)  # APIError 503 (and listed under files.failing) if it fails

    def _refused(self, what: str, reason: str, status: int = 502) -> APIError:
        self.sync.failed(what, reason)
        return APIError(status, f"{what}: {reason}")

    def _ask(self, path: str, timeout: float, what: str) -> dict[str, Any]:
        url = f"{self.primary_url}/+replica/mirror/{path}"
        try:
            with self._session.get(url, headers={HEADER: self.secret, "Accept": "application/json"},
                                   timeout=(CONNECT_TIMEOUT, timeout), stream=True, allow_redirects=False) as resp:
                body = resp.raw.read(MAX_ANSWER + 1, decode_content=True)
        except (requests.RequestException, OSError) as e:
            self.replica.failed(f"cannot reach the primary at {self.primary_url}: {type(e).__name__}",
                                unreachable=True)
            raise self._refused(what, f"the primary cannot be reached ({type(e).__name__})", 503) from None
        if len(body) > MAX_ANSWER:
            raise self._refused(what, f"the primary's answer is larger than {MAX_ANSWER} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise self._refused(what, f"the primary answered {resp.status_code} without a JSON document")
        if resp.status_code != 200:
            message = str(doc.get("message", ""))[:300]
            status = 404 if resp.status_code == 404 else 503 if resp.status_code == 503 else 502
            raise self._refused(what, f"the primary answered {resp.status_code}: {message}", status)
        return doc
