"""Run the WSGI application behind an asyncio HTTP server, in lanes of threads.

The event loop owns every socket, so an idle, slow or half-sent connection
costs a few hundred bytes and no thread. A request takes a thread only once
its headers are complete, and then from one of three lanes, so that waits of
one kind cannot starve the others:

- cached simple pages are answered in the event loop itself (no thread hop);
- ``/+changelog/`` long-polls and replicas' ``/+replica/changes`` get their own bounded lane: beyond
  ``max_long_polls`` waiters a new one is refused with 429 and Retry-After;
- reads of and pushes from an index that reads from a mirror (a mirror, or a
  stage with a mirror among its bases) run in the upstream lane, so a hanging
  upstream holds only those threads (a push from a mirror downloads the
  release's files first);
- everything else (the API, uploads, private stages) runs in the main lane.

Request bodies, with a length or chunked, are streamed: ``wsgi.input`` pulls
from the connection as the application reads, in the lane, after the view's
checks and up to the view's limit (server/http/request_body.py), so a body the application
refuses without reading is never stored anywhere (the server discards it as it
arrives). Every wait of a worker thread on the network is bounded: a body that
stalls or trickles below ``MIN_BODY_RATE`` and a response the client does not
read end the request (408); a body cut off by a disconnect is an error to the
reader, never a shorter body.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from ..api.errors import JSON_CT, APIError, json_body, reason_phrase
from .request_body import is_form

log = logging.getLogger("devpi.server.http")

MIN_BODY_RATE = 16 * 1024  # bytes/s a body must average once it has had `timeout` seconds


class Status(int):
    """An HTTP status code carrying the application's reason phrase (devpi puts
    messages there, e.g. ``200 identical``; ASGI itself knows only the code)."""

    reason: str

    def __new__(cls, code: int, reason: str) -> Status:
        self = super().__new__(cls, code)
        self.reason = reason
        return self


class BodyTimeout(APIError):
    """The client stopped sending the request body (or taking the response), or does it
    too slowly: the request ends with 408 and the connection is closed."""

    def __init__(self, message: str):
        super().__init__(408, message)


class Lane:
    """A fixed set of daemon threads (a long-poll must not delay the process's exit)."""

    def __init__(self, name: str, threads: int, *, max_busy: int | None = None, prestart: bool = False):
        self.name = name
        self.threads = threads
        self.max_busy = max_busy  # requests running or queued; None: bounded by the connection limit
        self.busy = 0  # changed in the event loop thread only
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._started = 0
        self._idle = 0  # threads waiting for a job
        self._waiting = 0  # jobs submitted and not yet taken
        self._lock = threading.Lock()
        if prestart:
            self.fill()

    def fill(self) -> None:
        """Start every thread the lane may have, now (rather than one per busy moment)."""
        with self._lock:
            while self._started < self.threads:
                self._spawn()

    def _spawn(self) -> None:
        self._started += 1
        threading.Thread(target=self._work, name=f"devpi-{self.name}-{self._started}", daemon=True).start()

    def _work(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})  # the dump is the main thread's job
        while True:
            with self._lock:
                self._idle += 1
            fut, fn, args = self._jobs.get()
            with self._lock:
                self._idle -= 1
                self._waiting -= 1
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as e:
                    fut.set_exception(e)

    def submit(self, fn: Callable, *args: Any) -> concurrent.futures.Future:
        """Queue a job; start another thread (up to the lane's count) when every idle one
        is already spoken for."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._waiting += 1
            if self._waiting > self._idle and self._started < self.threads:
                self._spawn()
        self._jobs.put((fut, fn, args))
        return fut

    @property
    def full(self) -> bool:
        return self.max_busy is not None and self.busy >= self.max_busy


class Body:
    """``wsgi.input``: reads pull from the connection through the event loop, with a
    deadline per read and a minimum average rate, so a stalled body frees its thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Callable, timeout: float):
        self.loop = loop
        self.receive = receive
        self.timeout = timeout
        self.buffer = bytearray()
        self.more = True
        self.received = 0
        self.started = time.monotonic()
        self.failed = False

    def _pull(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.receive(), self.loop)
        try:
            message = fut.result(self.timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self._fail(f"request body: nothing received for {self.timeout:g} s")
        if message["type"] != "http.request":  # the client went away: what came is not the body
            self._fail("request body: the client closed the connection")
        chunk = message.get("body", b"")
        self.buffer += chunk
        self.received += len(chunk)
        self.more = message.get("more_body", False)
        elapsed = time.monotonic() - self.started
        if self.more and elapsed > self.timeout and self.received < MIN_BODY_RATE * elapsed:
            self._fail(f"request body: arriving slower than {MIN_BODY_RATE // 1024} KiB/s")

    def _fail(self, message: str) -> None:
        self.failed = True
        self.more = False
        raise BodyTimeout(message)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            while self.more:
                self._pull()
            size = len(self.buffer)
        else:
            while self.more and len(self.buffer) < size:
                self._pull()
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self.buffer.find(b"\n", 0, limit if limit >= 0 else None)
            if end >= 0:
                return self.read(end + 1)
            if not self.more or 0 <= limit <= len(self.buffer):
                return self.read(limit if limit >= 0 else len(self.buffer))
            self._pull()

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def build_environ(scope: dict, body: Body) -> dict:
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    # WSGI: the unquoted bytes as latin-1 text; the app decides what is valid UTF-8
    path = (unquote_to_bytes(raw) if b"%" in raw else raw).decode("latin-1")
    server = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


_STATUSES: dict[str, int] = {}


def _status(status: str) -> int:
    """The code of a WSGI status line, carrying its reason phrase when that is not the
    standard one (remembered: nearly every response repeats one of a few lines)."""
    got = _STATUSES.get(status)
    if got is None:
        code, _, reason = status.partition(" ")
        try:
            standard = HTTPStatus(int(code)).phrase
        except ValueError:
            standard = ""
        got = int(code) if reason == standard else Status(int(code), reason)
        if len(_STATUSES) < 512:
            _STATUSES[status] = got
    return got


def _headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_json(send: Callable, status: int, message: str, headers: dict[str, str] | None = None,
                    close: bool = False) -> None:
    body = json_body({"message": message})
    head = [(b"content-type", JSON_CT.encode()), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": Status(status, reason_phrase(message)), "headers": head})
    await send({"type": "http.response.body", "body": body})


_INDEX_PATH = re.compile(r"^/([^/+][^/]*)/([^/+][^/]*)(?:/|$)")


class UpstreamIndexes:
    """Which indexes read from a mirror, from the core's in-memory index table (no SQL
    in the event loop); recomputed when that table is replaced."""

    def __init__(self, core: Any):
        self.core = core
        self._table: Any = None
        self._names: frozenset[str] = frozenset()

    def __contains__(self, fullname: str) -> bool:
        table = self.core._indexes
        if table is None:
            return True  # not loaded yet: assume the worst for a moment
        if table is not self._table:
            names = set()
            for ix in table.values():
                if any(i.type == "mirror" for i in self.core.resolution_order(ix)):
                    names.add(ix.fullname)
            self._names, self._table = frozenset(names), table
        return fullname in self._names


def _fast_parts(app: Callable) -> tuple[Any, Callable] | None:
    """The application's cached-page lane (``hit``) and the stack that answers its hits
    in the event loop, or None."""
    lane, answer = getattr(app, "fastlane", None), getattr(app, "fast_wsgi", None)
    return (lane, answer) if lane is not None and answer is not None else None


class WsgiBridge:
    """The ASGI application uvicorn runs: routes each request to the event loop
    (cached pages) or a lane, and carries bodies both ways with bounded waits."""

    def __init__(self, app: Callable, core: Any, *, threads: int, upstream_threads: int,
                 max_long_polls: int, timeout: float, max_body: int, prestart: bool = True):
        self.app = app
        self.timeout = timeout
        self.max_body = max_body
        self.fast = _fast_parts(app)
        # threads started up front, unless the server is answering its first requests from the
        # start-up lane (http/startup_lane.py): then once the application is attached
        self.main = Lane("worker", threads, prestart=prestart)
        self.upstream = Lane("upstream", upstream_threads)
        self.long_polls = Lane("longpoll", max_long_polls, max_busy=max_long_polls)
        # None while the server is still being put together (http/startup_lane.py): all in the main lane
        self.upstream_indexes = UpstreamIndexes(core) if core is not None else None

    def attach(self, app: Callable, core: Any) -> None:
        """Serve ``app`` from now on (the application, once a start that began without it
        has put it together). Any mix of old and new parts seen by a request in between
        answers correctly: the cached-page lane and its answering stack are swapped as one."""
        self.upstream_indexes = UpstreamIndexes(core)
        self.fast = _fast_parts(app)
        self.app = app
        self.main.fill()

    def lane_for(self, environ: dict) -> Lane:
        path = environ["PATH_INFO"]
        if path.startswith(("/+changelog/", "/+replica/changes")):
            return self.long_polls
        method = environ["REQUEST_METHOD"]
        reads = method in ("GET", "HEAD")
        if reads or method in ("POST", "PUSH"):
            m = _INDEX_PATH.match(path)
            upstream = self.upstream_indexes
            if m is None or upstream is None or f"{m.group(1)}/{m.group(2)}" not in upstream:
                return self.main
            # a push (not a form upload) to the index itself downloads the release's files first
            if reads or (m.end() == len(path) and not is_form(environ.get("CONTENT_TYPE"))):
                return self.upstream
        return self.main

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > self.max_body:
            return await send_json(send, 413, f"request body too large: {int(length)} bytes, the "
                                   f"server accepts at most {self.max_body}", close=True)
        # a chunked body, like one with a length, is read only by the view that wants it, in
        # its lane, after its checks and at most to its limit (server/http/request_body.py)
        body = Body(loop, receive, self.timeout)
        environ = build_environ(scope, body)
        fast = self.fast
        if fast is not None and fast[0].hit(environ) is not None:
            return await self._in_loop(environ, send, fast[1])
        lane = self.lane_for(environ)
        if lane.full:
            return await send_json(send, 429, f"too many waiting requests of this kind ({lane.max_busy}); "
                                   "try again shortly", {"Retry-After": "1"})
        lane.busy += 1
        try:
            result = await asyncio.wrap_future(lane.submit(self._run, environ, body, loop, send))
        except BodyTimeout as e:  # the response stalled: uvicorn closes the connection
            log.info("%s %s: %s", environ["REQUEST_METHOD"], environ["PATH_INFO"], e.message)
            return
        except asyncio.CancelledError:  # shutting down with this one still waiting (a long-poll)
            try:
                await send_json(send, 503, "the server is shutting down", {"Retry-After": "5"}, close=True)
            except Exception:
                pass  # its response had begun: uvicorn closes the connection
            return
        finally:
            lane.busy -= 1
        if result is not None:
            for message in result:
                await send(message)

    @staticmethod
    async def _in_loop(environ: dict, send: Callable, fast_wsgi: Callable) -> None:
        started: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> None:
            started[:] = [status, headers]

        chunks = fast_wsgi(environ, start_response)
        await send({"type": "http.response.start", "status": _status(started[0]),
                    "headers": _headers(started[1])})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    def _run(self, environ: dict, body: Body, loop: asyncio.AbstractEventLoop, send: Callable) -> list[dict] | None:
        """In a lane thread: call the application. A list answer (nearly all) goes back to
        the event loop whole; an iterator (file downloads) is streamed from here, each
        chunk waiting at most ``timeout`` for the client to take it."""
        started: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            if exc_info and started and started[2]:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers, False]
            return write

        def write(data: bytes) -> None:
            raise NotImplementedError("the write() callable of WSGI is not supported")

        def head() -> dict:
            headers = _headers(started[1])
            if body.failed:  # the rest of it may still be on its way: not a request to read
                headers.append((b"connection", b"close"))
            started[2] = True
            return {"type": "http.response.start", "status": _status(started[0]), "headers": headers}

        iterable = self.app(environ, start_response)
        try:
            if isinstance(iterable, (list, tuple)):
                return [head(), {"type": "http.response.body", "body": b"".join(iterable)}]
            # One chunk is held until the next arrives, so the last goes out with the end of the
            # body and the head with the first: a one-chunk answer costs one trip to the event
            # loop, not three. A chunk is never sent before the iterable has produced the next
            # one or ended, so an iterable that fails (a hash that does not match) leaves the
            # answer short, never complete.
            # The send of one chunk overlaps the reading of the next: it is waited for (bounded)
            # only before the next one goes out.
            held: bytes | None = None
            in_flight: concurrent.futures.Future | None = None
            for chunk in iterable:
                if not chunk:
                    continue
                if held is not None:
                    messages = [] if started[2] else [head()]
                    messages.append({"type": "http.response.body", "body": held, "more_body": True})
                    self._wait(in_flight)
                    in_flight = self._schedule(loop, send, messages)
                held = chunk
            messages = [] if started[2] else [head()]
            messages.append({"type": "http.response.body", "body": held or b""})
            self._wait(in_flight)
            self._wait(self._schedule(loop, send, messages))
            return None
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _schedule(loop: asyncio.AbstractEventLoop, send: Callable, messages: list[dict]) -> concurrent.futures.Future:
        async def send_all() -> None:
            for message in messages:
                await send(message)

        return asyncio.run_coroutine_threadsafe(send_all(), loop)

    def _wait(self, fut: concurrent.futures.Future | None) -> None:
        """Until the client took what ``fut`` sends, at most ``timeout``."""
        if fut is None:
            return
        try:
            fut.result(self.timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise BodyTimeout(f"response: the client took nothing for {self.timeout:g} s") from None
