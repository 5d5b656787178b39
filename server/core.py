"""The composition root: one object that owns the server's parts.

``Core`` wires storage, blobs, authentication, the in-memory index registry
and the page cache together, and is what every HTTP view receives. Caches
are invalidated by commit listeners (serials), whichever process committed.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from . import __version__
from .accounts.api_tokens import ApiTokens
from .accounts.api_tokens import looks_like_token as looks_like_api_token
from .accounts.auth import Authenticator, Identity
from .accounts.live_pwhash import LivePwhash
from .accounts.login_throttle import LoginThrottle, Rate
from .accounts.modify_policy import ModifyPolicy
from .accounts.scope import DELETE, INDEX_ADMIN, PUSH, READ, TOXRESULT, UPLOAD
from .config import ServerConfig, storage_display
from .http.trusted_proxies import TrustedProxies
from .mirror.via import via_mark
from .repos.repository import EmptyRepository, MergedRepository, Repository, StageRepository
from .repos.simple_page_cache import PageCache
from .repos.static_view import RESET_REQUEST, StaticView, Ticket
from .store import catalog, schema
from .store.audit_log import AuditLog
from .store.blobstore import BlobStore
from .store.catalog import IndexRow
from .store.disk_stats import DiskStats
from .store.flight_locks import FlightLocks
from .store.indexconfig import acl_read_of
from .store.storage import Change, Storage, kv_get

if TYPE_CHECKING:
    from .plugins import PluginManager

log = logging.getLogger("devpi.server")
WORKER_POLL = 0.1  # seconds between changelog polls when several workers share a database


MirrorFactory = Callable[["Core", IndexRow], Repository]


class Core:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.started = time.time()
        config.serverdir.mkdir(parents=True, exist_ok=True)
        # workers of one server see each other's commits within a tenth of a second
        self.storage = Storage(config.storage, poll_interval=WORKER_POLL if config.workers > 1 else 0.5)
        self.blobs = BlobStore(config.serverdir / "blobs")
        # one upstream fetch per mirror page or file across processes (store/flight_locks.py);
        # a lone SQLite server (its dir's lock keeps others out) needs none
        self.flight_locks = FlightLocks(self.storage, config.serverdir,
                                        enabled=not self.storage.is_sqlite or config.workers > 1)
        self.page_cache = PageCache(config.page_cache_size)
        # --static-dir: public pages and files as plain files for nginx (repos/static_view.py)
        self.static = StaticView(config.static_dir) if config.static_dir is not None else None
        if self.static is not None:
            self.static.claim(config.serverdir)
        # disk figures for /+status and the metrics, and the mirror's download recency
        # (store/disk_stats.py; kept up by runtime/disk_keeper.py and ``devpi gc``)
        self.disk = DiskStats(mirror_cache_budget=config.mirror_cache_size)
        self._indexes: dict[str, IndexRow] | None = None
        self._indexes_generation = 0  # bumped by every index change: a read older than that is not kept
        self._indexes_lock = threading.Lock()
        self._indexes_loading = threading.Lock()  # one reader after a change, not one per request
        self._repos: dict[str, Repository] = {}
        # (the indexes dict it was computed from, fullname -> whether every member of the
        # index's resolution order is readable by anyone): the cached-page fast path's check
        self._open_chains: tuple[dict[str, IndexRow] | None, dict[str, bool]] = (None, {})
        # the same per (index, user, groups): (may read it, members hidden) (see read_view)
        self._read_views: tuple[dict[str, IndexRow] | None, dict[tuple, tuple[bool, tuple[str, ...]]]] = (None, {})
        # index name -> a number that changes with every commit touching that index (from
        # one counter: concurrent commits never leave the same number twice)
        self._index_generations: dict[str, int] = {}
        self._generation_counter = itertools.count(1)
        # index type -> how its repository is made ("stage" is built in; the mirror and
        # plugins register theirs through devpiserver_index_types, see plugins.py)
        self.repository_factories: dict[str, MirrorFactory] = {}
        self.plugins: PluginManager | None = None  # set by PluginManager.configure
        self.change_listeners: list[Callable[[int, list[Change]], None]] = []
        self.uuid = ""
        # replication (server/replication/): the role object of a primary or a replica, set at
        # start-up; /+status, /+health and the response headers ask it
        self.replication: Any = None
        # extra headers for every answer (a replica says since when it is stale), or None
        self.response_headers: Callable[[], list[tuple[str, str]]] | None = None
        # a stage file's blob not in the store yet: fetch it (a replica asks its primary); True if it came
        self.fetch_missing_blob: Callable[[str, int], bool] | None = None
        # a replica's mirrors fetch through the primary instead of upstream (mirror/through_primary.py)
        self.mirror_source: Any = None
        self.via_mark = ""  # what this server's mirrors send as X-Devpi-Via (see mirror/via.py)
        self._pwhashes: dict[str, str | None] = {}
        self._pwhash_generation = 0
        # several processes on one database: every credential check reads the row (live_pwhash.py)
        self._shared_db = not self.storage.is_sqlite or config.workers > 1
        self._live_pwhash = LivePwhash(self.storage.engine) if self._shared_db else None
        self.auth: Authenticator | None = None
        self.api_tokens = ApiTokens(self.storage, self._live_pwhash)
        self.proxies = TrustedProxies(config.trusted_proxy)
        self.throttle = LoginThrottle(Rate.parse(config.login_rate), Rate.parse(config.login_rate_user))
        self.modify_policy = ModifyPolicy(config.restrict_modify)
        # writes and failed logins (http/audit_trail.py records them, GET /+audit reads them)
        self.audit = AuditLog(self.storage, config.audit_keep)
        self.storage.add_listener(self._on_commit)
        self._background: list[tuple[str, Callable[[], None]]] = []
        self._background_thread: threading.Thread | None = None
        self._background_lock = threading.Lock()

    # -- start-up -------------------------------------------------------------
    def setup(self, first_start: Callable[[], None] | None = None,
              resume: Callable[[], None] | None = None) -> None:
        """Migrate, and on a fresh database create root and root/pypi (``first_start``
        instead, if given: a replica takes its first serials from its primary). ``resume``
        runs on a database with a state before anything reads it (a replica whose primary
        can no longer feed it from its serial replaces it with the primary's snapshot)."""
        from .store.migrate import ensure_schema

        ensure_schema(self.storage)
        with self.storage.read() as conn:
            secret = kv_get(conn, "secret")
            node = kv_get(conn, "uuid")
        if secret is not None and resume is not None:
            resume()
            with self.storage.read() as conn:
                secret = kv_get(conn, "secret")
                node = kv_get(conn, "uuid")
        if secret is None:
            (first_start or self._first_start)()
            with self.storage.read() as conn:
                secret = kv_get(conn, "secret")
                node = kv_get(conn, "uuid")
        self.uuid = node
        self.auth = Authenticator(bytes.fromhex(secret))
        self.via_mark = via_mark(bytes.fromhex(secret))
        self.storage.init_serial()
        if self.static is not None:
            # kept if every commit up to now was removed from it (another worker serving it, or a
            # clean restart); emptied if a commit may have been missed (repos/static_view.py)
            reset = self.config.serverdir / RESET_REQUEST  # fsck --repair quarantined a blob
            kept = self.static.start(node, self._db_serial, reset=reset.exists())
            reset.unlink(missing_ok=True)
            log.info("static view %s: %s", self.static.root, "kept" if kept else "emptied")
            self.static.run_sweeper()  # mirror-backed pages leave by their deadline

    def _db_serial(self) -> int:
        with self.storage.read() as conn:
            serial = kv_get(conn, "serial")
        return int(serial) if serial is not None else -1

    def after_start(self, name: str, task: Callable[[], None]) -> None:
        """Run ``task`` in the background once the server answers (see ``start_background``).

        Start-up work that no request waits for (making directories, warming caches,
        indexing for search) would otherwise take the interpreter from the start-up path
        and delay the first answer. A task registered after the start runs at once."""
        with self._background_lock:
            if self._background_thread is None:
                self._background.append((name, task))
                return
        threading.Thread(target=self._run_background, args=([(name, task)],), name=f"after-start:{name}",
                         daemon=True).start()

    def start_background(self) -> threading.Thread:
        """Start the tasks of ``after_start`` (in order, in one thread); later calls return it.

        The server calls this after its first answer, or soon after it listens if no request
        comes."""
        with self._background_lock:
            if self._background_thread is None:
                tasks, self._background = self._background, []
                self._background_thread = threading.Thread(target=self._run_background, args=(tasks,),
                                                           name="after-start", daemon=True)
                self._background_thread.start()
            return self._background_thread

    @staticmethod
    def _run_background(tasks: list[tuple[str, Callable[[], None]]]) -> None:
        for name, task in tasks:
            try:
                task()
            except Exception:  # each is a head start or a side job: the server runs without it
                log.exception("start-up task %s failed", name)

    def _first_start(self) -> None:
        from .accounts.auth import hash_password
        from .store.indexconfig import defaults

        with self.storage.write("root") as tx:
            if kv_get(tx.conn, "secret") is not None:
                return  # another process initialised it first
            tx.conn.execute(insert(schema.kv).values(key="secret", value=secrets.token_hex(32)))
            tx.conn.execute(insert(schema.kv).values(key="uuid", value=uuid.uuid4().hex))
            catalog.create_user(tx, "root", hash_password(self.config.root_passwd or ""), {})
            mirror = defaults("mirror", "root")
            mirror.update(volatile=False, title="PyPI mirror", mirror_url=self.mirror_url_default())
            catalog.create_index(tx, "root", "pypi", mirror)
        log.info("initialised new server state with root and root/pypi")

    def mirror_url_default(self) -> str:
        if self.config.mirror_url:
            url = self.config.mirror_url
        else:
            from .mirror.pipconfig import pip_index_url

            url = pip_index_url()
        return url if url.endswith("/") else url + "/"

    # -- commits ----------------------------------------------------------------
    def _on_commit(self, serial: int, changes: list[Change]) -> None:
        index_changed = False
        changed: set[str] = set()  # indexes created, modified or deleted
        for change in changes:
            kind = change.get("kind")
            if change.get("index"):
                self._index_generations[change["index"]] = next(self._generation_counter)
            if kind in ("index", "user"):
                index_changed = True
                if kind == "index":
                    changed.add(change["index"])
            elif "project" in change:
                self.page_cache.drop_project(change["project"])
                self.page_cache.drop_project("")  # project lists
        if index_changed:
            with self._indexes_lock:
                self._indexes = None
                self._indexes_generation += 1
                # Merged views depend on bases and are cheap: all go. One index's own
                # repository goes only if that index changed: a mirror's holds its pages and
                # upstream connections, and a new user or index elsewhere changes neither.
                self._repos = {key: repo for key, repo in self._repos.items()
                               if key.startswith("1:") and key[2:] not in changed}
            self.page_cache.clear()
        if self.static is not None:
            self._update_static(serial, changes, index_changed)
        if any(c.get("kind") == "user" for c in changes):
            self._pwhash_generation += 1
            self._pwhashes = {}
        if any(c.get("kind") == "user" and c.get("op") in ("modify", "delete") for c in changes):
            for c in changes:
                if c.get("kind") == "user" and self.auth:
                    self.auth.cache.forget_user(c["user"])
        for fn in self.change_listeners:
            fn(serial, changes)

    def _update_static(self, serial: int, changes: list[Change], index_changed: bool) -> None:
        """Remove from the static view what the commit at ``serial`` changed, in the same
        moment as the page cache (before the write's answer; for another process's commit,
        when the poller brings it)."""
        static = self.static
        assert static is not None
        deletes = any(c.get("op") in ("delete", "replace") for c in changes)
        gone: list[tuple[str, str, str]] = []
        if deletes:
            with self.storage.read() as conn:
                gone = catalog.deleted_at(conn, serial)
        with static.commit(serial) as due:
            if not due:
                return  # another process removed it already
            if index_changed:
                static.drop_pages()
                static.keep_only({name for name in self.indexes() if self.chain_open(name)})
            for change in changes:
                if "project" in change and not index_changed:
                    static.drop_project(change["project"])
                if change.get("kind") == "file" and change.get("relpath") and change.get("index"):
                    user, _, index = change["index"].partition("/")
                    static.drop_file(user, index, change["relpath"])
            for user, index, relpath in gone:
                static.drop_file(user, index, relpath)

    def static_ticket(self) -> Ticket | None:
        """Taken before a page or file is read for the static view (None: no static view):
        a put with it lands only if no commit came since (repos/static_view.py)."""
        if self.static is None:
            return None
        generation = self.static.generation
        return Ticket(generation, self.storage.dispatched_serial, time.time())

    def static_pages_of(self, ix: IndexRow) -> bool:
        """Whether the static view keeps ``ix``'s pages: anyone may read its whole resolution
        order. Where a mirror is in it (``mirror_backed``), project pages only, each until
        its deadline (upstream's data goes stale without a commit)."""
        return self.static is not None and bool(self.chain_open(ix.fullname))

    def mirror_backed(self, ix: IndexRow) -> bool:
        """Whether anything but a stage is in ``ix``'s resolution order: its pages may change
        without a commit here, so the static view keeps them only until a deadline."""
        return any(m.type != "stage" for m in self.resolution_order(ix))

    def static_files_of(self, ix: IndexRow) -> bool:
        """Whether the static view keeps ``ix``'s files (immutable: mirrors' too)."""
        return self.static is not None and bool(self.chain_open(ix.fullname))

    # -- indexes ------------------------------------------------------------------
    def indexes(self) -> dict[str, IndexRow]:
        current = self._indexes
        if current is None:
            with self._indexes_loading:
                current = self._indexes
                if current is None:
                    generation = self._indexes_generation
                    with self.storage.read() as conn:
                        current = {ix.fullname: ix for ix in catalog.list_indexes(conn)}
                    with self._indexes_lock:
                        if generation == self._indexes_generation:  # no change landed while we read
                            self._indexes = current
        return current

    def get_index(self, user: str, name: str) -> IndexRow | None:
        key = f"{user}/{name}"
        ix = self.indexes().get(key)
        if ix is None and self._shared_db:
            # Another process may have just created it and our poller not seen that yet:
            # catch up on the changelog (one small query) before answering "no such index".
            self.storage.poll_once()
            ix = self.indexes().get(key)
        return ix

    def resolution_order(self, ix: IndexRow) -> list[IndexRow]:
        """The index, then its bases depth first, each once; mirrors last."""
        all_ix = self.indexes()
        order: list[IndexRow] = []
        seen: set[str] = set()

        def walk(i: IndexRow) -> None:
            if i.fullname in seen:
                return
            seen.add(i.fullname)
            order.append(i)
            for base in i.bases:
                if base in all_ix:
                    walk(all_ix[base])

        walk(ix)
        return [i for i in order if i.type != "mirror"] + [i for i in order if i.type == "mirror"]

    def whitelist_for(self, ix: IndexRow) -> Callable[[str], bool]:
        if ix.config.get("mirror_whitelist_inheritance", "union") == "intersection":
            allowed = set(ix.config.get("mirror_whitelist") or [])
        else:
            allowed = set()
            for i in self.resolution_order(ix):
                allowed.update(i.config.get("mirror_whitelist") or [])
        return lambda name: "*" in allowed or name in allowed

    def loaded_repositories(self) -> list[Repository]:
        """The repositories this process has made so far (no database read)."""
        return list(self._repos.values())

    def single_repository(self, ix: IndexRow) -> Repository:
        """One object per index: a mirror's holds its in-memory cache and its single-flight
        fetches, so concurrent first requests must not each build their own."""
        key = "1:" + ix.fullname
        repo = self._repos.get(key)
        if repo is None:
            with self._indexes_lock:
                repos = self._repos
                repo = repos.get(key)
                if repo is None:
                    if ix.type != "stage":
                        factory = self.repository_factories.get(ix.type)
                        repo = factory(self, ix) if factory else EmptyRepository(ix.fullname)
                    else:
                        name = ix.fullname
                        repo = StageRepository(self.storage, ix, lambda: self._index_generations.get(name, 0))
                    if self._indexes is not None and self._indexes.get(ix.fullname) is ix:
                        repos[key] = repo  # not one built from a row an index change replaced
        return repo

    def repository(self, ix: IndexRow, hidden: tuple[str, ...] = ()) -> Repository:
        """The merged view an index serves (its own files plus its bases'), without the
        members named in ``hidden`` (those its reader may not read: ``hidden_members``).

        A hidden private member still counts for the mirror_whitelist guard: a project
        it holds is not mixed with a mirror's releases of that name for anyone (the
        dependency-confusion guard must not depend on who asks; doc/security.md)."""
        if ix.type != "stage":
            return self.single_repository(ix)
        key = ix.fullname if not hidden else ix.fullname + "\0" + "\0".join(hidden)
        repo = self._repos.get(key)
        if repo is None:
            order = self.resolution_order(ix)
            members = [self.single_repository(i) for i in order if i.fullname not in hidden]
            guards = [self.single_repository(i) for i in order if i.fullname in hidden and i.type != "mirror"]
            repo = MergedRepository(ix.fullname, members, self.whitelist_for(ix), guards)
            with self._indexes_lock:
                if self._indexes is not None and self._indexes.get(ix.fullname) is ix:
                    self._repos[key] = repo
        return repo

    # -- read access --------------------------------------------------------------------
    @staticmethod
    def readable_by_anyone(ix: IndexRow) -> bool:
        return ":ANONYMOUS:" in acl_read_of(ix.config)

    def chain_open(self, fullname: str, load: bool = True) -> bool | None:
        """Whether the index and every member of its resolution order are readable by anyone
        (then every reader gets the same view and no one's identity matters). O(1) once
        known: remembered per loaded index table. ``load=False`` never reads the database
        (the event loop asks): None then when the table is not loaded."""
        indexes = self._indexes if not load else self.indexes()
        if indexes is None:
            return None
        known, flags = self._open_chains
        if known is not indexes:
            flags = {}
            self._open_chains = (indexes, flags)
        flag = flags.get(fullname)
        if flag is None:
            ix = indexes.get(fullname)
            if ix is None:
                return False
            flag = flags[fullname] = all(self.readable_by_anyone(m) for m in self.resolution_order(ix))
        return flag

    def hidden_members(self, ident: Identity | None, ix: IndexRow) -> tuple[str, ...]:
        """The members of the index's resolution order ``ident`` may not read (in order):
        what its view of the index leaves out. Empty for an open chain without a check."""
        if self.chain_open(ix.fullname):
            return ()
        return self.read_view(ident, ix)[1]

    def read_view(self, ident: Identity | None, ix: IndexRow) -> tuple[bool, tuple[str, ...]]:
        """(may ``ident`` read ``ix``, the members of its resolution order it may not read),
        remembered per loaded index table and (user, groups) for identities without a token
        scope: the cached-page fast path of a restricted index asks on every request."""
        if ident is not None and ident.scope is not None:
            return self.may_read(ident, ix), tuple(
                m.fullname for m in self.resolution_order(ix) if not self.may_read(ident, m))
        indexes = self.indexes()
        known, views = self._read_views
        if known is not indexes:
            views = {}
            self._read_views = (indexes, views)
        key = (ix.fullname, ident.user, ident.groups) if ident is not None else (ix.fullname,)
        view = views.get(key)
        if view is None:
            view = (self.may_read(ident, ix),
                    tuple(m.fullname for m in self.resolution_order(ix) if not self.may_read(ident, m)))
            if len(views) < 10_000:
                views[key] = view
        return view

    # -- identities and permissions ---------------------------------------------------
    def pwhash_of(self, user: str) -> str | None:
        """The stored hash, from memory: every authenticated request needs it, and user rows
        change rarely (any user change clears this, whichever process committed it).

        With several processes on one database (PostgreSQL) another process learns of a
        change only when its poller reads the changelog, up to half a second later: an old
        password or token must not work there meanwhile, so there every check reads the row
        (see accounts/live_pwhash.py; anonymous requests never get here)."""
        if self._live_pwhash is not None:
            return self._live_pwhash(user)
        try:
            return self._pwhashes[user]
        except KeyError:
            pass
        generation = self._pwhash_generation
        with self.storage.read() as conn:
            u = catalog.get_user(conn, user)
        pwhash = u.pwhash if u else None
        if u is not None and generation == self._pwhash_generation and len(self._pwhashes) < 10_000:
            self._pwhashes[user] = pwhash
        return pwhash

    def authenticate(self, user: str, secret: str) -> Identity | None:
        assert self.auth is not None
        if looks_like_api_token(secret):  # checked here only: never handed to a plugin
            return self.api_tokens.authenticate(user, secret, self._plugin_groups)
        if self.plugins is not None and self.plugins.auth is not None:
            return self.plugins.auth.authenticate(self, user, secret)
        return self.auth.authenticate(user, secret, self.pwhash_of(user))

    def identity_at_once(self, user: str, secret: str) -> Identity | None:
        """The identity of credentials that verify *without waiting*, else None (not known).

        For the event loop (the cached-page fast path of a read-restricted index), which must
        never wait for the database, a plugin or a key derivation: only a password in the
        verified-password cache or a login token (an HMAC), with the stored hash already in
        memory, on a single-process store. Anything else (PostgreSQL, whose processes read
        the hash per request; plugins such as LDAP; API tokens; a miss) is None: the request
        goes to a worker thread and ``authenticate`` as usual. A None is never a refusal."""
        if self._live_pwhash is not None or looks_like_api_token(secret) or (
                self.plugins is not None and self.plugins.auth is not None) or self.auth is None:
            return None
        pwhash = self._pwhashes.get(user)
        if pwhash is None:
            return None
        if self.auth.tokens.looks_like_token(secret):
            return Identity(user) if self.auth.tokens.check(user, secret, pwhash) else None
        return Identity(user) if self.auth.cache.hit(user, secret, pwhash) else None

    def _plugin_groups(self, user: str) -> tuple[str, ...]:
        """The groups plugins give ``user`` (a token's identity is in them too)."""
        if self.plugins is None or self.plugins.auth is None:
            return ()
        return tuple(self.plugins.auth.groups_of(user))

    @staticmethod
    def is_scoped(ident: Identity | None) -> bool:
        """A scoped API token: it may never change its user (password, email, tokens,
        deletion), whatever its actions (accounts/scope.py)."""
        return ident is not None and ident.scope is not None

    def may_modify_user(self, ident: Identity | None, username: str) -> bool:
        return not self.is_scoped(ident) and self.modify_policy.may_manage(ident, username)

    def may_modify_index(self, ident: Identity | None, ix: IndexRow) -> bool:
        return self.modify_policy.may_manage(self.within_scope(ident, INDEX_ADMIN, ix.fullname), ix.user)

    def may_create_index(self, ident: Identity | None, owner: str, name: str | None = None) -> bool:
        """A token needs ``index-admin`` on no index in particular, or with the new index
        named in its index list."""
        index = f"{owner}/{name}" if name is not None else None
        ident = self.within_scope(ident, INDEX_ADMIN, index)
        return self.modify_policy.may_manage(ident, owner)

    def may_delete_released(self, ident: Identity | None, ix: IndexRow) -> bool:
        """Deleting from a non-volatile index (with force): its owner, root or a
        --restrict-modify admin, never a mere acl_upload member (doc/api.md)."""
        ident = self.within_scope(ident, DELETE, ix.fullname)
        return ident is not None and (ident.user == ix.user or self.modify_policy.is_admin(ident))

    @staticmethod
    def within_scope(ident: Identity | None, action: str, index: str | None) -> Identity | None:
        """The identity to check ``action`` on ``index`` with: ``ident`` itself, or None
        (anonymous) where a scoped token does not allow it (accounts/scope.py)."""
        if ident is None or ident.scope is None or ident.scope.allows(action, index):
            return ident
        return None

    @staticmethod
    def in_acl(ident: Identity | None, acl: list[str] | tuple[str, ...]) -> bool:
        if ":ANONYMOUS:" in acl:
            return True
        if ident is None:
            return False
        return ":AUTHENTICATED:" in acl or ident.user in acl or any(f":{g}" in acl for g in ident.groups)

    def may_read(self, ident: Identity | None, ix: IndexRow) -> bool:
        """Root and the owner always; else ``acl_read`` (default: everyone)."""
        ident = self.within_scope(ident, READ, ix.fullname)
        if ident is not None and ident.user in ("root", ix.user):
            return True
        return self.in_acl(ident, acl_read_of(ix.config))

    def may_upload(self, ident: Identity | None, ix: IndexRow) -> bool:
        """Release files and documentation (also the target of a push)."""
        ident = self.within_scope(ident, UPLOAD, ix.fullname)
        return ix.type == "stage" and self.in_acl(ident, ix.config.get("acl_upload") or [])

    def may_upload_toxresult(self, ident: Identity | None, ix: IndexRow) -> bool:
        ident = self.within_scope(ident, TOXRESULT, ix.fullname)
        return self.in_acl(ident, ix.config.get("acl_toxresult_upload") or [])

    def may_push_from(self, ident: Identity | None, ix: IndexRow) -> bool:
        """Whether a token's scope lets it push releases out of ``ix`` (a password may)."""
        return self.within_scope(ident, PUSH, ix.fullname) is not None

    def may_delete(self, ident: Identity | None, ix: IndexRow) -> bool:
        """Deleting and (un)yanking: a token needs its ``delete`` action on ``ix``."""
        ident = self.within_scope(ident, DELETE, ix.fullname)
        return self.modify_policy.may_manage(ident, ix.user) or self.may_delete_released(ident, ix) or (
            ident is not None and self.in_acl(ident, ix.config.get("acl_upload") or []))

    def status(self) -> dict[str, Any]:
        return {
            "serverdir": str(self.config.serverdir), "uuid": self.uuid,
            "pid": os.getpid(), "worker": self.config.worker,
            "versioninfo": {"devpi-server": __version__, "devpi": __version__},
            "server-code": str(Path(__file__).parent), "host": self.config.host, "port": self.config.port,
            "outside-url": self.config.outside_url, "serial": self.storage.current_serial,
            "storage": self._storage_display(), "uptime": round(time.time() - self.started, 3),
            "role": self.replication.wire_role if self.replication else "MASTER",
            "replication": self.replication.status() if self.replication else {"role": "primary", "feed": False},
            "offline": self.config.offline, "polling_replicas": {}, "metrics": [],
            "memory": self._memory_status(),
            "plugins": self.plugins.describe() if self.plugins else {"loaded": [], "failed": []},
        }

    def _memory_status(self) -> dict[str, Any]:
        """What the bounded in-memory caches hold (bytes are estimates), for operators and tests."""
        mirrors = {}
        for key, repo in list(self._repos.items()):
            stats = getattr(repo, "memory_stats", None)
            if key.startswith("1:") and stats is not None:
                mirrors[key[2:]] = stats()
        return {"page_cache": self.page_cache.stats(), "mirrors": mirrors}

    def _storage_display(self) -> str:
        return storage_display(self.storage.url)
