"""`devpi server`: parse options, take the server dir, migrate, serve (server/http/httpserver.py).

Start-up does no key derivation and imports nothing it does not need, so the
first request is answered well under a second after the process starts. With SQLite and
a snapshot of simple pages from the last run that is still true (repos/page_snapshot.py),
the server listens before it imports its SQL layer and views at all: it answers those
pages at once and assembles the rest in a thread (http/startup_lane.py).
"""
from __future__ import annotations

import argparse
import errno
import faulthandler
import fcntl
import importlib.util
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .accounts.modify_policy import parse_restrict_modify
from .config import ServerConfig, parse_budget, parse_size, positive_int, positive_seconds, storage_display
from .plugins import SHUTDOWN_EVENT_WAIT, PluginManager, make_plugin_manager

if TYPE_CHECKING:  # imported when the server is assembled, not before its first answer
    from .core import Core
    from .http.page_snapshot_writer import PageSnapshotWriter
    from .http.startup_lane import StartupLane

# The server may answer before it imports its SQL layer and web framework (see above): without
# the ``server`` extra it would then fail only later, with a traceback. So look them up now (a
# path lookup, not an import) and fail as importing this module used to: ``devpi server`` and
# ``python -m devpi.server`` turn that into one line saying what to install (extra_check.py).
for _library in ("sqlalchemy", "bottle"):
    if importlib.util.find_spec(_library) is None:
        raise ModuleNotFoundError(f"No module named {_library!r}", name=_library)

log = logging.getLogger("devpi.server")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AFTER_FIRST_ANSWER = 0.05  # seconds: the first response is written before background work competes
IDLE_START = 1.0  # seconds after listening: background work starts even if no request came


def _trusted_proxy(text: str) -> str:
    from .http.trusted_proxies import parse

    try:
        parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _rate(text: str) -> str:
    from .accounts.login_throttle import Rate

    try:
        Rate.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _metrics_allow(text: str) -> str:
    from .http.trusted_proxies import parse_allow

    try:
        parse_allow(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _free_space(text: str) -> int:
    size = parse_size(text)
    if size < 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 500M or 2G)")
    return size


MAX_WORKERS = 64  # server processes one --workers may start (each holds its threads and pools)


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_WORKERS}, not {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _allow_list(text: str) -> tuple[str, ...]:
    return _policy_entries(text, "allow_hosts")


def _file_hosts(text: str) -> tuple[str, ...]:
    return _policy_entries(text, "file_hosts")


def _policy_entries(text: str, option: str) -> tuple[str, ...]:
    """The entries, once the mirror policy has read them (a bad one stops the start)."""
    from .mirror.policy import MirrorPolicy, PolicyError

    entries = _names(text)
    try:
        MirrorPolicy.from_options(**{option: entries})
    except PolicyError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return entries


def _seconds_or_off(text: str) -> float:
    """Seconds, 0 included (off, or no wait); not negative, nan or inf."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text!r}")
    return value


def make_parser(plugins: PluginManager | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devpi server", description="Run the devpi index server.")
    p.add_argument("--serverdir", type=Path, default=Path(os.environ.get("DEVPI_SERVERDIR", "~/.devpi/server")),
                   help="server state directory (default: ~/.devpi/server, or $DEVPI_SERVERDIR)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=3141, help="port to listen on, 0 for any free port (default: 3141)")
    p.add_argument("--storage", metavar="URL", default=None,
                   help="database URL: sqlite:///PATH (default: inside the server dir) or postgresql://...")
    p.add_argument("--root-passwd", metavar="PW", default=None,
                   help="root's initial password: set when the server dir is created, or later while root has "
                        "none (else ignored with a warning: use `devpi passwd root`)")
    p.add_argument("--mirror-url", metavar="URL", default=None,
                   help="upstream simple index of root/pypi (default: the index pip on this machine uses)")
    p.add_argument("--offline", action="store_true", help="never contact the upstream index")
    p.add_argument("--outside-url", metavar="URL", default=None,
                   help="URL clients use to reach this server, when behind a proxy")
    p.add_argument("--trusted-proxy", metavar="ADDR[,CIDR...]", type=_trusted_proxy, default="loopback",
                   help="peers whose X-Outside-Url, X-Forwarded-Proto and X-Forwarded-For are believed: "
                        "addresses, CIDRs, 'loopback' or 'none' (default: loopback)")
    p.add_argument("--login-rate", metavar="N/SECONDS", type=_rate, default="10/60",
                   help="failed logins allowed per client address before 429, refilled over SECONDS; "
                        "'off' disables (default: 10/60)")
    p.add_argument("--login-rate-user", metavar="N/SECONDS", type=_rate, default="20/60",
                   help="failed logins allowed per user name from addresses it never logged in from; "
                        "'off' disables (default: 20/60)")
    p.add_argument("--max-upload-size", type=parse_size, default=parse_size("512M"),
                   help="largest accepted upload body (default: 512M)")
    p.add_argument("--workers", metavar="N", type=_worker_count, default=1,
                   help="server processes sharing the listening socket, each serving every request; "
                        "a parent process supervises them (default: 1, no parent)")
    p.add_argument("--threads", type=positive_int, default=32,
                   help="worker threads for the API, uploads and private indexes (default: 32)")
    p.add_argument("--upstream-threads", type=positive_int, default=32,
                   help="worker threads for reads of, and pushes from, indexes that read from a mirror, so "
                        "a slow upstream cannot hold the others (default: 32)")
    p.add_argument("--max-long-polls", type=positive_int, default=64,
                   help="/+changelog long-polls waiting at once, each in its own thread; more are refused "
                        "with 429 (default: 64)")
    p.add_argument("--max-connections", type=positive_int, default=4096,
                   help="open connections; past it the longest idle one is closed (default: 4096, "
                        "lowered to what the open-file limit allows)")
    p.add_argument("--connection-timeout", type=positive_seconds, default=30.0,
                   help="seconds a connection may stay idle or take to send a request head, and a "
                        "request body or response may stall (default: 30)")
    p.add_argument("--pin-cpu", metavar="auto|off|N", default="off",
                   help="keep all threads on one CPU: auto picks one and moves off it when other work "
                        "crowds it; N pins to CPU N; off (default) lets the kernel place threads, which "
                        "measured faster on a busy machine (doc/performance.md)")
    p.add_argument("--request-timeout", type=positive_seconds, default=5.0,
                   help="seconds a page waits for upstream before answering from its stored copy")
    p.add_argument("--restrict-modify", metavar="SPEC", default=None,
                   help="comma list of users and :groups who alone (with root) may create, modify and "
                        "delete users and indexes; anonymous user creation is then refused "
                        "(default: unset, anyone may create a user, as the original devpi)")
    p.add_argument("--mirror-creators", metavar="USERS", type=_names, default=(),
                   help="users besides root who may create mirror indexes or change a mirror_url "
                        "(comma-separated; default: root only)")
    p.add_argument("--mirror-allow-hosts", metavar="HOST[:PORT],CIDR", type=_allow_list, default=(),
                   help="internal destinations (loopback, private, link-local ...) mirrors may reach; "
                        "the host of --mirror-url is allowed implicitly (default: public addresses only)")
    p.add_argument("--mirror-file-hosts", metavar="HOST[:PORT]", type=_file_hosts, default=(),
                   help="hosts besides a mirror's own upstream that mirrors not owned by root may fetch "
                        "files from (default: none)")
    p.add_argument("--mirror-max-file-size", type=parse_size, default=parse_size("4G"),
                   help="largest file a mirror downloads when neither upstream's answer nor its page states "
                        "the size (default: 4G)")
    p.add_argument("--mirror-download-timeout", type=positive_seconds, default=3600.0,
                   help="seconds one mirrored file's download may take in all (default: 3600)")
    p.add_argument("--page-cache-size", type=parse_size, default=parse_size("64M"),
                   help="memory for rendered simple pages; a larger page is served but not kept (default: 64M)")
    p.add_argument("--static-dir", metavar="DIR", type=Path, default=None,
                   help="keep the simple pages and files of public indexes as plain files under DIR for "
                        "nginx to serve (`devpi gen-config --static-dir DIR` writes the site; "
                        "doc/deployment.md) (default: off)")
    p.add_argument("--mirror-memory", type=parse_size, default=parse_size("64M"),
                   help="memory each mirror index keeps upstream pages in; a larger page is served and "
                        "stored, but read back from the database when asked again (default: 64M)")
    p.add_argument("--mirror-cache-size", metavar="SIZE", type=parse_budget, default=None,
                   help="bytes of cached mirror files kept on disk, e.g. 20G; past it the least recently "
                        "used are evicted and downloaded again when asked for (default: no limit)")
    p.add_argument("--gc-interval", metavar="SECONDS", type=_seconds_or_off, default=3600.0,
                   help="seconds between collections of blobs no file names any more; 0 turns the "
                        "background collection off (`devpi gc` still works) (default: 3600)")
    p.add_argument("--gc-grace", metavar="SECONDS", type=_seconds_or_off, default=6 * 3600.0,
                   help="seconds a blob must have been unreferenced before it is deleted: longer than "
                        "any export takes (default: 21600)")
    p.add_argument("--disk-check-interval", metavar="SECONDS", type=positive_seconds, default=60.0,
                   help="seconds between checks of --mirror-cache-size and writes of download times "
                        "(default: 60)")
    p.add_argument("--blob-storage", metavar="URL", default=None,
                   help="where file contents are kept, when a plugin provides a store for the URL's "
                        "scheme (default: the blobs folder in the server dir)")
    p.add_argument("--audit-keep", metavar="COUNT", type=positive_int, default=100_000,
                   help="audit log entries kept (writes and failed logins, GET /+audit for root); the "
                        "oldest go first (default: 100000)")
    p.add_argument("--metrics-allow", metavar="loopback|any|none|ADDR[,CIDR...]", type=_metrics_allow,
                   default="loopback",
                   help="clients that may read GET /+metrics, by address (behind a trusted proxy: the "
                        "client's); root may from anywhere (default: loopback)")
    p.add_argument("--min-free-space", metavar="SIZE", type=_free_space, default=parse_size("1G"),
                   help="free disk space below which GET /+health answers 503 (default: 1G)")
    p.add_argument("--debug", action="store_true", help="log more")
    version = plugins.version_text(__version__) if plugins else f"devpi server {__version__}"
    p.add_argument("--version", action="version", version=version,
                   help="show the version and the installed plugins, then exit")
    if plugins is not None:
        plugins.hook.devpiserver_add_parser_options(parser=p)
    return p


class ServerDirLock:
    """One server per server dir (with embedded SQLite): a second start is refused clearly."""

    def __init__(self, serverdir: Path):
        self.path = serverdir / ".lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                pid = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
                raise SystemExit(f"devpi server: another server (pid {pid}) is already running on "
                                 f"{self.path.parent}") from None
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def check_held_by(self, pid: int) -> None:
        """A worker of ``devpi server --workers N`` runs on its parent's lock: refuse to
        serve unless that parent (``pid``) holds it."""
        holder = None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            fd = None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # had: nobody holds it
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            finally:
                os.close(fd)
        if holder != str(pid):
            raise SystemExit(f"devpi server: started as a worker, but its parent (pid {pid}) does not hold "
                             f"the lock of {self.path.parent}")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        serverdir=args.serverdir.expanduser().resolve(), host=args.host, port=args.port,
        storage_url=args.storage, root_passwd=args.root_passwd, mirror_url=args.mirror_url,
        offline=args.offline, debug=args.debug, max_upload_size=args.max_upload_size, threads=args.threads,
        outside_url=args.outside_url, request_timeout=args.request_timeout, trusted_proxy=args.trusted_proxy,
        login_rate=args.login_rate, login_rate_user=args.login_rate_user,
        restrict_modify=parse_restrict_modify(args.restrict_modify),
        mirror_creators=args.mirror_creators, mirror_allow_hosts=args.mirror_allow_hosts,
        mirror_file_hosts=args.mirror_file_hosts,
        mirror_max_file_size=args.mirror_max_file_size, mirror_download_timeout=args.mirror_download_timeout,
        page_cache_size=args.page_cache_size, mirror_memory=args.mirror_memory, audit_keep=args.audit_keep,
        static_dir=args.static_dir.expanduser().resolve() if args.static_dir else None,
        mirror_cache_size=args.mirror_cache_size, gc_interval=args.gc_interval, gc_grace=args.gc_grace,
        disk_check_interval=args.disk_check_interval, workers=args.workers,
        metrics_allow=args.metrics_allow, min_free_space=args.min_free_space)


def _later(seconds: float, fn: Callable[[], Any]) -> None:
    timer = threading.Timer(seconds, fn)
    timer.daemon = True
    timer.start()


def _root_passwd_on_existing_dir(core: Core, given: str | None) -> None:
    """``--root-passwd`` on a server dir made earlier: root's password is set only at the
    first start, so say what happened instead of ignoring it. A root still without a
    password (the server was first started without the option) takes it: whoever may start
    the server owns its dir anyway."""
    if not given:
        return
    from .accounts.auth import hash_password, verify_password
    from .store import catalog

    with core.storage.read() as conn:
        root = catalog.get_user(conn, "root")
    if root is None or verify_password(given, root.pwhash):
        return  # no root (deleted, or a plugin's), or this start or an earlier one set it
    if verify_password("", root.pwhash):
        with core.storage.write("root") as tx:
            catalog.modify_user(tx, root, {}, hash_password(given))
        log.warning("root had no password: set it from --root-passwd")
        return
    log.warning("--root-passwd is ignored: root already has another password (change it with "
                "`devpi login root` and `devpi passwd root`)")


def _refuse_open_root(core: Core, host: str) -> None:
    """An empty root password is only acceptable when nobody else can connect."""
    if host in LOOPBACK:
        return
    from .accounts.auth import verify_password
    from .store import catalog

    with core.storage.read() as conn:
        root = catalog.get_user(conn, "root")
    if root is not None and verify_password("", root.pwhash):
        raise SystemExit(f"devpi server: root has an empty password; refusing to listen on {host}. "
                         "Set one with --root-passwd on first start or `devpi passwd root`.")


START_JOIN = 120.0  # seconds a stop waits for a start still under way
STOP_BUDGET = 4.5  # seconds from SIGTERM/SIGINT to exit: requests in flight get GRACE of it (httpserver.py)
MIN_EVENT_WAIT = 0.5  # seconds pending plugin events get at least, however long the requests took
EARLY_IDLE = 1.0  # seconds a start answering from its snapshot waits for a first request before assembling
ASSEMBLY_SWITCH_INTERVAL = 0.001  # seconds (sys.setswitchinterval) while assembling behind the snapshot


@dataclass
class Assembled:
    """The server's parts once put together."""

    core: Core
    app: Callable
    snapshots: PageSnapshotWriter | None


def assemble(config: ServerConfig, args: argparse.Namespace, plugins: PluginManager, pin: Any) -> Assembled:
    """Open (and migrate) the storage, configure the plugins, build the application."""
    from .core import Core
    from .repos.static_view import NotAStaticDir
    from .store.blob_marker import check_blob_storage, record_blob_storage

    role = args.replication_role
    try:
        core = Core(config)
        first_start = resume = None
        if role.wire_role == "REPLICA":  # a fresh replica takes its first serial from the primary
            role.attach(core)
            first_start, resume = role.bootstrap, role.resume
        else:
            core.replication = role
        check_blob_storage(config.serverdir, args.blob_storage)
        if args.blob_storage:
            core.blobs = plugins.blob_store(core, args.blob_storage)
            record_blob_storage(config.serverdir, args.blob_storage)
        core.setup(first_start, resume)
    except SystemExit:
        raise
    except NotAStaticDir as e:
        raise SystemExit(f"devpi server: --static-dir: {e}") from None
    except Exception as e:
        if args.debug:
            raise
        raise SystemExit(f"devpi server: cannot open storage {config.storage}: {e}") from None
    if role.wire_role != "REPLICA":  # a replica's root is its primary's
        _root_passwd_on_existing_dir(core, config.root_passwd)
    _refuse_open_root(core, config.host)
    core.after_start("blob-dirs", core.blobs.make_dirs)
    core.after_start("cpu-pin", pin.start_watching)
    if not args.blob_storage:  # a plugin's blob store keeps its own house
        from .runtime.disk_keeper import DiskKeeper

        core.after_start("disk-keeper", DiskKeeper(core).start)
    plugins.configure(core, args)  # the mirror, test runs, web UI and third parties plug in
    core.storage.start_poller()
    from .app import build_app, devpi_headers

    app = build_app(core)
    # The background start-up work (core.after_start) begins just after the first answer has
    # gone out, or when the server has listened a while without one: never before it.
    app.after_first = app.fast_wsgi.after_first = lambda: _later(AFTER_FIRST_ANSWER, core.start_background)
    snapshots = None
    if core.storage.is_sqlite and not config.worker:  # one writer per server dir: worker 0
        from .http.page_snapshot_writer import PageSnapshotWriter
        from .repos.page_snapshot import FILE_NAME

        snapshots = PageSnapshotWriter(core, config.serverdir / FILE_NAME, _fingerprint(plugins),
                                       lambda serial: devpi_headers(core, serial))
        snapshots.start()
    return Assembled(core, app, snapshots)


def _fingerprint(plugins: PluginManager) -> str:
    """What a snapshot of pages must have been written by: this version, these plugins."""
    return plugins.version_text(__version__)


def _startup_lane(config: ServerConfig, plugins: PluginManager) -> StartupLane | None:
    """The lane answering the last run's pages, if the server dir has a snapshot that is still
    true of its SQLite database (the standard library reads both); None otherwise."""
    storage = config.storage
    if not storage.startswith("sqlite:///"):
        return None
    from .repos import page_snapshot

    snapshot = page_snapshot.load(config.serverdir / page_snapshot.FILE_NAME, _fingerprint(plugins))
    if snapshot is None or not snapshot.pages or (snapshot.open_root and config.host not in LOOPBACK):
        return None  # (an open root on a wide address: the assembly refuses it before listening)
    from .http.startup_lane import StartupLane
    from .store.serial_peek import SerialPeek

    peek = SerialPeek(Path(storage[len("sqlite:///"):]))
    stamp = peek.read()
    if stamp != (snapshot.serial, snapshot.uuid):
        peek.close()
        log.info("simple-page snapshot of serial %s not used: the database is at %s", snapshot.serial,
                 stamp[0] if stamp else "an unknown serial")
        return None
    log.info("answering %d simple pages of serial %s from the snapshot while the server starts",
             len(snapshot.pages), snapshot.serial)
    return StartupLane(snapshot, peek)


def _announce(config: ServerConfig) -> None:
    """Say the server is up (tests and scripts wait for this line): every request is answered
    from now on, by the application or, while it is being assembled, after it."""
    url_host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"devpi server {__version__} listening on http://{url_host}:{config.port} "
          f"(serverdir {config.serverdir}, storage {storage_display(config.storage)})", flush=True)


def _shut_down(plugins: PluginManager, built: Assembled, deadline: float | None = None) -> None:
    """Tear down after the server loop ended; ``deadline`` (monotonic): a signal asked to stop,
    and the process should be gone by then (pending plugin events wait at most until it)."""
    wait = SHUTDOWN_EVENT_WAIT if deadline is None else \
        min(SHUTDOWN_EVENT_WAIT, max(MIN_EVENT_WAIT, deadline - time.monotonic()))
    plugins.events.wait_idle(wait)
    try:
        plugins.hook.devpiserver_shutdown(core=built.core)
    except Exception:
        log.exception("shutdown hook failed")
    try:
        built.core.disk.access.flush(built.core.storage)  # the download times noted since the last batch
    except Exception:
        log.exception("could not record the last download times")
    if built.snapshots is not None:
        built.snapshots.stop()  # the pages as they are now, for the next start
    if hasattr(built.app, "log"):
        built.app.log.close()
    built.core.flight_locks.close()
    if built.core.static is not None:
        built.core.static.close()  # its sweeper; a page it had yet to sweep is in its bucket
    built.core.storage.close()


def _listen(config: ServerConfig) -> Any:
    from .http.httpserver import listen

    try:
        return listen(config.host, config.port)
    except OSError as e:
        raise SystemExit(f"devpi server: cannot listen on {config.host}:{config.port}: {e.strerror}") from None


def _supervise(config: ServerConfig, args: argparse.Namespace, argv: list[str]) -> int:
    """The parent of ``--workers N`` (runtime/workers.py): bind, start and watch the workers."""
    from .runtime.workers import Supervisor

    sock = _listen(config)
    config.port = sock.getsockname()[1]
    return Supervisor(argv, sock, args.workers, lambda: _announce(config)).run()


def main(argv: list[str] | None = None) -> int:
    plugins = make_plugin_manager()  # before parsing: plugins add options
    args = make_parser(plugins).parse_args(argv)
    # kill -USR2 <pid>: every thread's stack to the log, for a server that seems stuck. Blocked
    # until the server runs, and in every thread started meanwhile (they inherit the mask), so
    # the main thread takes it and the dump shows it as the current thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    from .runtime.batched_log import BatchedLogHandler, shared_lines
    from .runtime.cpu_placement import CpuPin, PinError

    handler = BatchedLogHandler(shared_lines())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, handlers=[handler])
    if not args.debug:
        logging.getLogger("uvicorn").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    plugins.report_failures()
    from .runtime.malloc_tuning import tune

    tune()  # before any thread: big transient buffers are given back (see malloc_tuning)
    if args.workers > 1 and args.pin_cpu != "off":
        raise SystemExit("devpi server: --pin-cpu keeps one process on one CPU; it cannot be combined "
                         "with --workers")
    pin = CpuPin(args.pin_cpu)
    try:
        pin.apply()  # before the server starts its threads: they inherit the placement
    except PinError as e:
        raise SystemExit(f"devpi server: {e}") from None
    config = config_from_args(args)
    from .replication.role import from_args

    args.replication_role = from_args(args)  # options checked before anything starts
    try:
        config.serverdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"devpi server: cannot create server dir {config.serverdir}: {e.strerror}") from None
    from .runtime.workers import WorkerEnv

    worker = WorkerEnv.from_environ()  # this process is one of --workers N, started by its parent
    if worker is not None:
        config.worker = worker.index
        worker.watch_parent()
    if not (args.storage or "").startswith("postgresql"):
        if worker is None:
            ServerDirLock(config.serverdir).acquire()
        else:
            ServerDirLock(config.serverdir).check_held_by(os.getppid())
    if args.workers > 1 and worker is None:
        return _supervise(config, args, sys.argv[1:] if argv is None else list(argv))
    early = _startup_lane(config, plugins)
    built: Assembled | None = None
    if early is None:
        built = assemble(config, args, plugins, pin)
        app, core = built.app, built.core
    else:
        from .http.request_log import RequestLog
        from .http.startup_lane import StartingApp

        app, core = StartingApp(), None
        app.fastlane, app.fast_wsgi = early, RequestLog(early)
        # the assembly waits for the first answer, or the first request the lane cannot answer,
        # or EARLY_IDLE seconds
        go = threading.Event()
        app.fast_wsgi.after_first = app.on_wait = go.set
    from .http.httpserver import connection_cap, make_server
    from .http.wsgibridge import WsgiBridge

    bridge = WsgiBridge(app, core, threads=config.threads, upstream_threads=args.upstream_threads,
                        max_long_polls=args.max_long_polls, timeout=args.connection_timeout,
                        max_body=config.max_upload_size + 1024 * 1024, prestart=early is None)
    sock = worker.sock if worker is not None else _listen(config)
    server = make_server(bridge, timeout=args.connection_timeout,
                         max_connections=connection_cap(args.max_connections))
    config.port = sock.getsockname()[1]
    builder: threading.Thread | None = None
    stopping = threading.Event()
    failure: list[BaseException] = []
    done: list[Assembled] = []

    def assemble_behind() -> None:
        """The rest of the start, while the event loop answers from the snapshot: from its first
        answer on (begun earlier, the imports here would compete with that answer for the
        interpreter), or once it has listened EARLY_IDLE seconds without a request."""
        go.wait(EARLY_IDLE)
        if stopping.is_set():  # stopped before anything needed the application: nothing to assemble
            return
        # the event loop still answers from the snapshot meanwhile: it gets the interpreter back
        # within a millisecond, not the default five, from the imports here
        interval = sys.getswitchinterval()
        sys.setswitchinterval(ASSEMBLY_SWITCH_INTERVAL)
        try:
            got = assemble(config, args, plugins, pin)
        except BaseException as e:
            failure.append(e)
            app.failed(str(e) if isinstance(e, SystemExit) else type(e).__name__)
            server.should_exit = True
            return
        finally:
            sys.setswitchinterval(interval)
        early.hand_over(got.core.page_cache, got.core.storage.current_serial, got.core.uuid)
        bridge.attach(got.app, got.core)
        app.ready(got.app)
        early.close()
        done.append(got)
        _later(IDLE_START, got.core.start_background)

    signals: list[tuple[int, float]] = []  # (signal, monotonic time) that asked the server to stop

    def stop(signum, frame):
        if not signals:  # (the server loop's handler below took it first, if it was running)
            signals.append((signum, time.monotonic()))
        raise KeyboardInterrupt

    uvicorn_exit = server.handle_exit

    def handle_exit(signum, frame):  # the server loop's handler while it runs (uvicorn's, and this)
        signals.append((signum, time.monotonic()))
        uvicorn_exit(signum, frame)

    server.handle_exit = handle_exit
    try:  # from the handlers' first moment on, a SIGTERM or SIGINT lands in the except below
        signal.signal(signal.SIGTERM, stop)
        # also when started in the background by a shell (``devpi server &``), which starts it
        # with SIGINT ignored: Ctrl-C's signal stops it the same way wherever it comes from
        signal.signal(signal.SIGINT, stop)
        if worker is None:
            _announce(config)
        else:
            log.info("worker %d (pid %d) serving", worker.index, os.getpid())
            worker.ready()
        if built is not None:
            _later(IDLE_START, built.core.start_background)
        else:  # started while SIGUSR2 is blocked: the thread and all it starts inherit that
            builder = threading.Thread(target=assemble_behind, name="start-up", daemon=True)
            builder.start()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})  # this thread alone takes it
        server.run(sockets=[sock])  # on SIGINT/SIGTERM it finishes, then re-raises the signal
    except KeyboardInterrupt:
        if not signals:
            signals.append((0, time.monotonic()))
        log.info("shutting down")
    finally:
        pin.stop()
        sock.close()
        if builder is not None:
            stopping.set()
            go.set()
            builder.join(START_JOIN)  # a stop during the assembly: let it finish before tearing down
            built = done[0] if done else None
        if built is not None:
            _shut_down(plugins, built, signals[0][1] + STOP_BUDGET if signals else None)
    if signals:
        name = signal.Signals(signals[0][0]).name if signals[0][0] else "a signal"
        log.info("devpi server stopped (%s, %.1f s after it)", name, time.monotonic() - signals[0][1])
    if failure:
        raise failure[0]
    return 0
