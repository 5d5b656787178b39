"""The client end of one live test run: open it, stream events, keep it alive, finish it.

Events arrive from the runner (in this process or through an execnet
channel) on any thread; a sender thread posts them in small batches as
they come, and posts an empty batch as a heartbeat when tests are quiet
(tox installing, a slow test), so the server can tell a quiet run from a
vanished client. A reporting failure never stops the tests: it is warned
about once, and the tox report is still uploaded at the end -- through the
classic toxresult POST when the server has no test-run API.
"""
from __future__ import annotations

import json
import queue
import threading
from typing import Any

from devpi.client.hub import Hub

BATCH_DELAY = 0.2  # seconds events may wait to be sent together
MAX_BATCH_EVENTS = 500
# The server takes test-run bodies up to 2 MiB (MAX_TOX_REPORT_BYTES); 500 failures with
# 20,000-character tracebacks would be 10 MB, so a batch also ends at about 1 MiB.
MAX_BATCH_BYTES = 1024 * 1024


class RunReporter:
    def __init__(self, hub: Hub, file_href: str, where: dict[str, str], label: str, timeout: float,
                 upload: bool = True) -> None:
        self.hub = hub
        self.file_href = file_href.split("#", 1)[0]
        self.stage_url, _, rest = self.file_href.partition("/+f/")
        self.relpath = "+f/" + rest
        self.where = where
        self.label = label
        self.timeout = timeout
        self.upload = upload
        self.run: dict[str, Any] | None = None
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.sender: threading.Thread | None = None
        self.warned = False
        self.sent = 0
        self.done = False
        self.finish_lock = threading.Lock()
        import requests

        self.session = requests.Session()  # its own: the sender thread must not share the hub's
        self.session.cert = hub.session.cert

    # -- HTTP --------------------------------------------------------------------------
    def _post(self, url: str, body: dict[str, Any]) -> Any:
        import requests

        headers = {"Accept": "application/json", **self.hub.auth_headers(url)}
        try:
            return self.session.post(url, json=body, headers=headers, timeout=(15, 300))
        except requests.RequestException as e:
            self._warn(f"cannot reach the server to report the test run: {e}")
            return None

    def _warn(self, msg: str) -> None:
        if not self.warned:
            self.warned = True
            self.hub.warn(msg)

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> dict[str, Any] | None:
        """Open the run on the server; None if it cannot take live runs (results upload at the end)."""
        if not self.upload:
            return None
        body = {"file": self.relpath, "host": self.where.get("host"), "platform": self.where.get("platform"),
                "python": self.where.get("python"), "label": self.label, "timeout": self.timeout,
                "info": {"executable": self.where.get("executable")}}
        r = self._post(f"{self.stage_url}/+testruns", body)
        if r is not None and r.status_code == 201:
            self.run = r.json()["result"]
            self.sender = threading.Thread(target=self._send_loop, name="devpi-test-reporter", daemon=True)
            self.sender.start()
            self.hub.info(f"test run {self.run['href']} ({self.label})")
        elif r is not None and r.status_code == 403:
            self._warn(_message(r) or "no permission to upload test results")
            self.upload = False
        elif r is not None:
            self.hub.debugmsg(f"no live test runs on this server ({r.status_code}); the report uploads at the end")
        return self.run

    def add_event(self, event: dict[str, Any]) -> None:
        if self.run is not None:
            self.queue.put(event)

    def _send_loop(self) -> None:
        assert self.run is not None
        url = f"{self.stage_url}/+testruns/{self.run['id']}/events"
        heartbeat = max(0.5, self.timeout / 4)
        done = False
        while not done:
            batch: list[dict[str, Any]] = []
            try:
                item = self.queue.get(timeout=heartbeat)
            except queue.Empty:
                item = {}
            if item is None:
                done = True
            elif item:
                batch.append(item)
                done = self._drain(batch, BATCH_DELAY)
            r = self._post(url, {"key": self.run["key"], "events": batch})
            if r is not None and r.status_code != 200:
                self._warn(f"the server refused test events: {r.status_code} {_message(r)}")
            elif r is not None:
                self.sent += len(batch)

    def _drain(self, batch: list[dict[str, Any]], delay: float) -> bool:
        """Collect what else arrives within ``delay``; True if the end marker came."""
        import time

        end = time.monotonic() + delay
        size = sum(_size(e) for e in batch)
        while len(batch) < MAX_BATCH_EVENTS and size < MAX_BATCH_BYTES:
            try:
                item = self.queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
            size += _size(item)
        return False

    def finish(self, exitcode: int | None, toxresult: dict[str, Any] | None, *, interrupted: bool = False,
               error: str | None = None) -> dict[str, Any] | None:
        """Flush the events, then hand over tox's report; returns the finished run (or None).

        Only the first call counts (an interrupt during clean-up must not undo a result).
        """
        with self.finish_lock:
            if self.done:
                return None
            self.done = True
        if self.sender is not None:
            self.queue.put(None)
            self.sender.join()
        if self.run is not None:
            body = {"key": self.run["key"], "exitcode": exitcode, "toxresult": toxresult,
                    "interrupted": interrupted, "error": error}
            r = self._post(f"{self.stage_url}/+testruns/{self.run['id']}/finish", body)
            if r is not None and r.status_code == 200:
                return r.json()["result"]
            if r is not None:
                self.hub.warn(f"could not finish test run {self.run['id']}: {r.status_code} {_message(r)}")
            return None
        if self.upload and toxresult is not None:
            self.classic_upload(toxresult)
        return None

    def classic_upload(self, toxresult: dict[str, Any]) -> None:
        """devpi's own toxresult upload: a POST of the report to the release file's URL."""
        r = self._post(self.file_href, toxresult)
        if r is not None and r.status_code == 200:
            self.hub.info(f"posted tox result data to {self.file_href}")
        elif r is not None:
            self.hub.warn(f"could not upload the tox result: {r.status_code} {_message(r)}")


def _message(r: Any) -> str:
    try:
        return str(r.json().get("message") or "")
    except ValueError:
        return r.reason or ""


def _size(event: dict[str, Any]) -> int:
    """The bytes an event takes in the JSON body (escapes included: requests sends ASCII)."""
    return len(json.dumps(event, default=str)) + 1
