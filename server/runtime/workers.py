"""`devpi server --workers N`: N server processes sharing one listening socket.

The parent binds the socket once, then starts each worker as a fresh interpreter
(``python -m devpi.server`` with the same arguments) that inherits the socket and accepts
on it. Why this and not the alternatives:

- one socket, one accept queue: whichever worker is idle takes the next connection, a
  worker that dies loses no queued connection, and port 0 resolves once for all;
  ``SO_REUSEPORT`` gives each process a queue of its own (a dead worker's queued
  connections are reset) and lets any other process of the same user join the port;
- a new interpreter rather than ``fork``: the parent has threads (logging) and imported
  libraries with their own state; a forked child of a threaded process may inherit a
  lock held forever. A spawned worker starts exactly like a one-process server.

The parent does no request work. It holds the server dir's lock (SQLite: a second,
separate server start is still refused, its workers check the lock is their parent's),
starts worker 0 first (it migrates the database, once) and the others once it is up,
says "listening" once all are, restarts a worker that dies, and on SIGTERM/SIGINT stops
them all within the stop budget. SIGHUP restarts the workers one at a time, each
replacement up before its predecessor is stopped (e.g. after an upgrade).

Workers see each other's commits through the changelog (store/storage.py's poller);
fetches from upstream are single-flight across them (store/flight_locks.py); work that
must run once per server dir runs in worker 0 only (the page snapshot) or has a lock of
its own (the blob collection, runtime/disk_keeper.py).
"""
from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("devpi.server.workers")
ENV_FD = "DEVPI_WORKER_FD"  # the listening socket a worker inherits
ENV_INDEX = "DEVPI_WORKER_INDEX"  # its number
ENV_READY = "DEVPI_WORKER_READY_FD"  # a pipe it writes one byte to once it answers requests
READY_TIMEOUT = 120.0  # seconds a worker may take to start (a migration of a big database)
STOP_BUDGET = 4.7  # seconds from SIGTERM to the last worker gone (each stops within 4.5 itself)
RESTART_PAUSE = 1.0  # seconds before restarting a worker that died soon after its start ...
QUICK_DEATH = 10.0  # ... within this many seconds (a crash loop does not spin the CPU)
TICK = 0.1  # seconds between looks at the workers
PARENT_CHECK = 1.0  # seconds between a worker's checks that its parent still runs


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    started: float


@dataclass
class WorkerEnv:
    """What a worker process was given by its parent (``from_environ``)."""

    index: int
    sock: socket.socket
    ready_fd: int | None

    @classmethod
    def from_environ(cls) -> WorkerEnv | None:
        """The worker's inheritance, taken out of the environment (its own children, e.g. a
        plugin's, must not think they are workers); None in a parent or single server."""
        fd = os.environ.pop(ENV_FD, None)
        index = os.environ.pop(ENV_INDEX, "0")
        ready = os.environ.pop(ENV_READY, None)
        if fd is None:
            return None
        try:
            sock = socket.socket(fileno=int(fd))
            if sock.type != socket.SOCK_STREAM:
                raise OSError("not a stream socket")
        except (OSError, ValueError) as e:
            raise SystemExit(f"devpi server: {ENV_FD}={fd} is not a listening socket ({e})") from None
        return cls(int(index), sock, int(ready) if ready else None)

    def ready(self) -> None:
        """Tell the parent this worker answers requests."""
        if self.ready_fd is not None:
            try:
                os.write(self.ready_fd, b"r")
                os.close(self.ready_fd)
            except OSError:
                pass
            self.ready_fd = None

    def watch_parent(self) -> None:
        """Stop (as on SIGTERM) when the parent is gone: a worker never outlives its server."""
        parent = os.getppid()

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(PARENT_CHECK)
            log.warning("the parent process %d is gone: stopping", parent)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Supervisor:
    def __init__(self, argv: list[str], sock: socket.socket, count: int, announce: Callable[[], None]):
        self.argv = argv
        self.sock = sock
        self.count = count
        self.announce = announce
        self.workers: list[Worker | None] = [None] * count
        self.stop_signal: int | None = None
        self.reload = False

    # -- processes --------------------------------------------------------------------------
    def _spawn(self, index: int) -> tuple[Worker, int]:
        """A new worker and the read end of its ready pipe."""
        read_fd, write_fd = os.pipe()
        env = {**os.environ, ENV_FD: str(self.sock.fileno()), ENV_INDEX: str(index), ENV_READY: str(write_fd)}
        try:
            proc = subprocess.Popen([sys.executable, "-m", "devpi.server", *self.argv], env=env,
                                    pass_fds=(self.sock.fileno(), write_fd))
        finally:
            os.close(write_fd)
        log.info("worker %d started (pid %d)", index, proc.pid)
        return Worker(index, proc, time.monotonic()), read_fd

    def _wait_ready(self, worker: Worker, read_fd: int, timeout: float = READY_TIMEOUT) -> bool:
        """Whether the worker said it is ready in time (False: it exited, or a stop came)."""
        deadline = time.monotonic() + timeout
        try:
            while self.stop_signal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([read_fd], [], [], min(left, TICK))
                if readable:
                    return os.read(read_fd, 1) == b"r"  # b"": it exited before it was ready
        finally:
            os.close(read_fd)
        return False

    @staticmethod
    def _end(worker: Worker, timeout: float) -> None:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
        try:
            worker.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("worker %d (pid %d) did not stop in %.1f s: killed", worker.index, worker.proc.pid, timeout)
            worker.proc.kill()
            worker.proc.wait()

    # -- the parent's life ------------------------------------------------------------------
    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        try:
            # worker 0 first: it migrates the database; the others start together on the migrated one
            pending = [self._spawn(0)]
            self.workers[0] = pending[0][0]
            if self._wait_ready(*pending[0]):
                pending = [self._spawn(index) for index in range(1, self.count)]
                for worker, _ in pending:
                    self.workers[worker.index] = worker
                pending = [p for p in pending if not self._wait_ready(*p)]
            if pending:
                if self.stop_signal is not None:
                    return 0
                worker = pending[0][0]
                try:
                    code = worker.proc.wait(STOP_BUDGET)  # its ready pipe closed: it is exiting
                except subprocess.TimeoutExpired:
                    code = None
                if code is None:  # an exit has said why already (one line on stderr)
                    log.error("worker %d did not start in %.0f s", worker.index, READY_TIMEOUT)
                self.stop_signal = 0
                return code or 1
            self.announce()
            self._supervise()
            return 0
        finally:
            self._stop_all()

    def _on_stop(self, signum: int, frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.stop_at = time.monotonic()

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload = True

    def _supervise(self) -> None:
        while self.stop_signal is None:
            time.sleep(TICK)
            for index, worker in enumerate(self.workers):
                if self.stop_signal is not None:
                    break
                if worker is None or worker.proc.poll() is None:
                    continue
                log.warning("worker %d (pid %d) exited with %s: restarting it", index, worker.proc.pid,
                            worker.proc.returncode)
                if time.monotonic() - worker.started < QUICK_DEATH:
                    time.sleep(RESTART_PAUSE)
                new, read_fd = self._spawn(index)
                self.workers[index] = new
                os.close(read_fd)  # the others serve meanwhile: no need to wait for this one
            if self.reload:
                self.reload = False
                self._rolling_restart()

    def _rolling_restart(self) -> None:
        log.info("SIGHUP: restarting the workers one at a time")
        for index, old in enumerate(self.workers):
            if self.stop_signal is not None:
                return
            new, read_fd = self._spawn(index)
            if not self._wait_ready(new, read_fd):
                log.error("worker %d's replacement (pid %d) did not start: keeping pid %s", index,
                          new.proc.pid, old.proc.pid if old else "-")
                self._end(new, STOP_BUDGET)
                continue
            self.workers[index] = new
            if old is not None:
                self._end(old, STOP_BUDGET)

    def _stop_all(self) -> None:
        started = getattr(self, "stop_at", time.monotonic())
        running = [w for w in self.workers if w is not None and w.proc.poll() is None]
        for worker in running:
            worker.proc.send_signal(signal.SIGTERM)
        for worker in running:
            self._end(worker, max(0.1, started + STOP_BUDGET - time.monotonic()))
        self.sock.close()
        if self.stop_signal:
            log.info("devpi server stopped (%s, %.1f s after it)", signal.Signals(self.stop_signal).name,
                     time.monotonic() - started)
