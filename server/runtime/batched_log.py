"""Log lines to stderr, written in batches by one thread.

A write per line is a system call made while the calling thread holds the GIL,
and ``logging``'s stream handler also takes a lock per record that every
request thread of a burst then queues on: a cold install logs two lines per
package (the access line and the upstream fetch). Lines are collected in a
list (an append is atomic under the GIL) and written together every ~100 ms.
Warnings and errors are written at once, after what is queued, so nothing is
reordered and a problem is on the terminal before the process can die.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading


class BatchedLines:
    """Collects lines and writes them in batches from one thread; ``close`` (also run at
    exit) writes what is left."""

    def __init__(self, fd: int = 2, interval: float = 0.1):
        self.fd = fd
        self.interval = interval
        self._lines: list[str] = []
        self._write_lock = threading.Lock()  # whole batches, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def add(self, line: str) -> None:
        self._lines.append(line)

    def flush(self) -> None:
        with self._write_lock:
            lines, self._lines = self._lines, []
            if lines:
                try:
                    os.write(self.fd, "".join(lines).encode("utf-8", "replace"))
                except OSError:
                    pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.flush()


class BatchedLogHandler(logging.Handler):
    """A ``logging`` handler over ``BatchedLines``: INFO and below are queued, WARNING
    and above flush the queue and are written at once."""

    def __init__(self, lines: BatchedLines, level: int = logging.NOTSET):
        super().__init__(level)
        self.lines = lines

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: appends need none
        rv = self.filter(record)
        if rv:
            self.emit(rv if isinstance(rv, logging.LogRecord) else record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.add(self.format(record) + "\n")
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self.lines.flush()


_shared: BatchedLines | None = None
_shared_lock = threading.Lock()


def shared_lines() -> BatchedLines:
    """The process's one writer to stderr (access lines and log records share it, so
    they stay in order)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = BatchedLines()
        return _shared
