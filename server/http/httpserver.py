"""The HTTP server: uvicorn's httptools protocol, with the limits an exposed server needs.

uvicorn reads sockets in one event loop (epoll, no descriptor ceiling) and
hands complete requests to the application (server/http/wsgibridge.py). It leaves
three things to us, which this protocol subclass adds:

- a deadline for the request head: a connection that sends nothing, or only
  part of a request line and headers, is closed after ``timeout`` seconds
  (408 when it had sent something), however it trickles;
- a bound on the request head's size (431) and on open connections: past
  ``max_connections`` the connection idle or waiting for its head the longest
  is closed to make room, and only when every connection is busy with a
  request is the new one refused (503);
- transport errors as JSON ``{"message": ...}`` and the application's own
  reason phrases (devpi puts messages there).

This reaches into uvicorn's internals, which are no public API and may change in
any release: ``httptools_impl.STATUS_LINE``, ``RequestResponseCycle`` (its
``send``, ``transport``, ``more_body``, ``response_started``), the protocol's
``cycle``, ``pipeline``, ``connections`` and ``send_400_response``. setup.py
therefore pins uvicorn below the next minor release after the one tested
(0.55); raise that bound only after tests/security/test_sec_transport.py passes
with the new release.
"""
from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any

from ..api.errors import json_body, reason_phrase
from .uvicorn_parts import load

httptools_impl, uvicorn_config, uvicorn_server = load()
HttpToolsProtocol = httptools_impl.HttpToolsProtocol

log = logging.getLogger("devpi.server.http")

MAX_HEAD_BYTES = 64 * 1024  # request line plus headers
FD_RESERVE = 128  # descriptors kept for the database, blobs and upstream connections
GRACE = 3.0  # seconds requests in flight may take to finish after SIGTERM/SIGINT (main.STOP_BUDGET)


class _StatusLines(dict):
    """uvicorn writes ``STATUS_LINE[status]``; a status carrying its own reason gets it."""

    def __getitem__(self, code: int) -> bytes:
        reason = getattr(code, "reason", None)
        if reason:
            return b"HTTP/1.1 %d %s\r\n" % (code, reason_phrase(reason).encode("latin-1"))
        return dict.__getitem__(self, code)


httptools_impl.STATUS_LINE = _StatusLines(httptools_impl.STATUS_LINE)


class _HeadHeld:
    """The response's transport while its head is written: holds the head until the first
    body write (or the response's end), so head and body leave in one ``send`` (uvicorn
    writes them separately: a second system call for every response)."""

    __slots__ = ("transport", "held")

    def __init__(self, transport: asyncio.Transport):
        self.transport = transport
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.held is None:
            self.held = data
            return
        if self.held:
            data, self.held = self.held + data, b""
        if data:
            self.transport.write(data)

    def flush(self) -> None:
        if self.held:
            data, self.held = self.held, b""
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Cycle(httptools_impl.RequestResponseCycle):
    async def send(self, message: Any) -> None:
        if not self.response_started and message["type"] == "http.response.start":
            self.transport = _HeadHeld(self.transport)  # 100-continue, earlier, went out as is
        await super().send(message)


def raise_fd_limit() -> int:
    """Use every descriptor the hard limit allows (the soft default of 1024 is a relic of
    select()), and return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(requested: int) -> int:
    """The connection limit, no higher than the descriptors this process may open."""
    return max(16, min(requested, raise_fd_limit() - FD_RESERVE))


def _json_response(status: int, message: str, extra: bytes = b"") -> bytes:
    body = json_body({"message": message})
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s"
            b"connection: close\r\n\r\n" % (status, reason_phrase(message).encode("latin-1"), len(body), extra)
            + body)


def protocol_class(*, timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """A protocol class bound to one server's limits and its registry of waiting connections."""
    waiting: dict[HttpToolsProtocol, None] = {}  # idle or before their head, oldest first

    class DevpiProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _awaiting_head = False
        _at_message_start = False
        _push = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections and not self._make_room():
                transport.write(_json_response(503, "too many connections; try again shortly",
                                               b"retry-after: 1\r\n"))
                transport.close()
                return
            self._awaiting_head = self._at_message_start = True
            self._wait()

        def _make_room(self) -> bool:
            while waiting:
                victim = next(iter(waiting))
                waiting.pop(victim, None)
                if victim is not self and victim.transport is not None and not victim.transport.is_closing():
                    victim.transport.close()
                    return True
            return False

        def _wait(self) -> None:
            """Between requests or inside a head: on the clock, and first to go when full."""
            waiting[self] = None
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

        def _stop_waiting(self) -> None:
            waiting.pop(self, None)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            waiting.pop(self, None)
            if self.transport.is_closing():
                return
            if self._head_bytes:
                self.transport.write(_json_response(408, f"request head not received within {timeout:g} s"))
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._at_message_start:
                self._at_message_start = False
                self._awaiting_head = True
                if data.startswith(b"PUSH "):
                    # devpi's own method, unknown to llhttp: parsed as another, restored below
                    data = b"SOURCE" + data[4:]
                    self._push = True
            if self._awaiting_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._awaiting_head and not self.transport.is_closing():
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._stop_waiting()
                    self.transport.write(_json_response(431, f"request head larger than {MAX_HEAD_BYTES} bytes"))
                    self.transport.close()
                elif self._head_timer is None:
                    self._wait()  # only a head that did not arrive whole is put on the clock

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._awaiting_head = True

        def on_headers_complete(self) -> None:
            self._awaiting_head = False
            self._head_bytes = 0
            self._stop_waiting()
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and type(cycle) is httptools_impl.RequestResponseCycle:
                cycle.__class__ = _Cycle  # its task has not started yet
            if self._push:  # the request's task has not run yet: it sees PUSH
                self._push = False
                self.scope["method"] = "PUSH"

        def on_response_complete(self) -> None:
            held = self.cycle.transport if self.cycle is not None else None
            if isinstance(held, _HeadHeld):
                held.flush()  # a head without body bytes (HEAD, 304, empty body)
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                waiting[self] = None  # idle: uvicorn's keep-alive timer closes it
                # the next bytes begin a request unless this one's body is still arriving
                self._at_message_start = not self.cycle.more_body

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._stop_waiting()
            self.transport.write(_json_response(400, f"malformed HTTP request: {msg}"))
            self.transport.close()

    return DevpiProtocol


def listen(host: str, port: int) -> socket.socket:
    """Bind before serving, so port 0 is resolved for the 'listening on' line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(app: Any, *, timeout: float, max_connections: int) -> Any:
    config = uvicorn_config.Config(
        app, http=protocol_class(timeout=timeout, max_connections=max_connections), loop="asyncio",
        lifespan="off", log_config=None, access_log=False, timeout_keep_alive=int(max(1, timeout)),
        timeout_graceful_shutdown=GRACE, server_header=False, date_header=True, backlog=2048,
        proxy_headers=False, ws="none")
    return uvicorn_server.Server(config)
