"""The plugin manager: finds plugins, registers them, and keeps their failures theirs.

Who is registered, in this order:

- the server's own parts, as internal plugins (``INTERNAL``): the mirror, test runs, the
  LDAP directory (which registers its auth hooks only with ``--ldap-config``), the S3 blob
  store (``--blob-storage s3://...``) and the web UI, each a module with hook implementations (server/hooks.py). An error in
  one of them propagates as it always did: they are the server.
- every entry point of the group ``devpi_server`` in the installed distributions (a
  third party's plugin). Its hook implementations are wrapped: an exception is logged
  with the plugin's name and the call goes on as if it had returned None, so a broken
  plugin never fails a request, a commit or the start. ``APIError`` passes through: it
  is a deliberate answer (a refused push, a 404 from its own route). The exception are
  hooks that write inside the caller's transaction (``ROLLBACK_HOOKS``): their failure
  rolls the write back and answers a JSON error naming the plugin.

An entry point that cannot be imported is logged and skipped (the server starts without
it), and ``/+status`` lists it under ``plugins`` with its error, next to the loaded ones;
``devpi server --version`` lists them too. A module named in ``DEVPI_SERVER_PLUGINS`` that
cannot be loaded refuses the start in one line instead (doc/plugins.md says why).

Event hooks (``devpiserver_on_*``) are called from one daemon thread fed by a bounded
queue from the commit listener, so no request waits for a plugin; with no plugin
implementing them the listener is not even installed. Nothing here runs on the cached
simple-page path: hooks are asked once at start-up, or on uncached paths.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from . import hooks
from .api.errors import APIError

if TYPE_CHECKING:
    from .accounts.auth import Identity
    from .core import Core

log = logging.getLogger("devpi.server.plugins")
ENTRY_POINT_GROUP = "devpi_server"
# The server's own parts; a missing optional one (devpi.web in a trimmed install) is skipped.
INTERNAL = ("devpi.server.mirror.extension", "devpi.server.testruns.hooks",
            "devpi.server.accounts.ldap_directory", "devpi.server.runtime.s3_plugin", "devpi.web.hooks",
            "devpi.server.replication.plugin")  # last: a replica's write refusal wraps the web UI too
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
SHUTDOWN_EVENT_WAIT = 5.0  # seconds a clean stop waits for pending events to reach plugins
MAX_PENDING_EVENTS = 10_000  # events waiting for slow plugins; past it new ones are dropped, logged
AUTH_HOOKS = ("devpiserver_auth_password", "devpiserver_auth_token", "devpiserver_auth_groups")
# hooks that write inside the caller's transaction: a failure rolls it back (see _rolled_back)
ROLLBACK_HOOKS = frozenset({"devpiserver_on_push_copy"})
EVENT_HOOKS = ("devpiserver_on_upload", "devpiserver_on_push", "devpiserver_on_delete",
               "devpiserver_on_testrun_finished")


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with devpi's hook specification, loading rules and error isolation."""

    def __init__(self) -> None:
        super().__init__(hooks.PROJECT)
        self.add_hookspecs(hooks)
        self.external: list[dict[str, str]] = []  # loaded third-party plugins, for /+status
        self.failed: list[dict[str, str]] = []  # plugins that could not be loaded
        self.events = EventDispatcher(self)
        self.auth: PluginAuth | None = None  # set when a plugin implements an auth hook

    # -- loading ------------------------------------------------------------------------------
    def load_internal(self) -> None:
        for name in INTERNAL:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as e:
                if name.startswith(e.name or "\0"):  # the optional part is not installed
                    continue
                raise
            self.register(module, name=name)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Like pluggy's ``load_setuptools_entrypoints``, but a plugin that fails to import is
        recorded and skipped instead of stopping the start."""
        seen: set[str] = set()
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != group or ep.name in seen or self.get_plugin(ep.name) is not None:
                    continue
                seen.add(ep.name)
                dist_name = dist.metadata["name"] or "?"
                where = {"name": ep.name, "dist": dist_name, "version": dist.version or "?"}
                try:
                    plugin = ep.load()
                    self.register(plugin, name=ep.name)
                except Exception as e:
                    self.failed.append({**where, "error": f"{type(e).__name__}: {e}"})
                    continue
                self._isolate(ep.name)
                self.external.append(where)

    def load_modules(self, names: str) -> None:
        """Register modules named in ``DEVPI_SERVER_PLUGINS`` (comma-separated): a plugin under
        development, before it is packaged. Treated as a third party's plugin, except that
        one that cannot be loaded refuses the start in one line: the admin asked for it by
        name."""
        for name in (n.strip() for n in names.split(",")):
            if not name:
                continue
            if not MODULE_NAME.fullmatch(name):
                raise SystemExit(f"devpi server: DEVPI_SERVER_PLUGINS: {name[:80]!r} is not a module name")
            try:
                self.register(importlib.import_module(name), name=name)
            except Exception as e:
                raise SystemExit(f"devpi server: DEVPI_SERVER_PLUGINS: cannot load {name}: "
                                 f"{type(e).__name__}: {str(e)[:200]}") from None
            self._isolate(name)
            self.external.append({"name": name, "dist": "", "version": ""})

    def _isolate(self, plugin_name: str) -> None:
        """Wrap each of the plugin's hook implementations so that its errors stay its own."""
        plugin = self.get_plugin(plugin_name)
        for caller in self.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.hookwrapper or impl.wrapper):
                    guard = _rolled_back if caller.name in ROLLBACK_HOOKS else _guarded
                    impl.function = guard(impl.function, plugin_name, caller.name)

    def report_failures(self) -> None:
        """Log the plugins that failed to load, once logging is set up."""
        for f in self.failed:
            log.error("plugin %s (%s %s) not loaded: %s", f["name"], f["dist"], f["version"], f["error"])

    def describe(self) -> dict[str, Any]:
        return {"loaded": list(self.external), "failed": list(self.failed)}

    def version_text(self, version: str) -> str:
        names = ", ".join(f"{p['dist'] or p['name']} {p['version']}".strip() for p in self.external)
        return f"devpi server {version}" + (f" (plugins: {names})" if names else "")

    # -- calling ------------------------------------------------------------------------------
    def has_impls(self, hook_name: str) -> bool:
        return bool(getattr(self.hook, hook_name).get_hookimpls())

    def page_extras(self, hook_name: str, **kwargs: Any) -> list[str]:
        """The HTML fragments plugins add to a web page (empty when none implements the hook)."""
        caller = getattr(self.hook, hook_name)
        if not caller.get_hookimpls():
            return []
        return [html for html in caller(**kwargs) if html]

    def configure(self, core: Core, args: Any) -> None:
        """Everything that is asked once when the server is put together."""
        from .store import indexconfig

        core.plugins = self
        for types in self.hook.devpiserver_index_types():
            for t in types or ():
                try:
                    indexconfig.register_index_type(t)
                except ValueError as e:
                    raise SystemExit(f"devpi server: {e}") from None
                core.repository_factories[t.name] = t.make_repository
        for index_type in indexconfig.index_types():
            for keys in self.hook.devpiserver_indexconfig_keys(index_type=index_type):
                for key in keys or ():
                    indexconfig.register_key(index_type, key)
        self.hook.devpiserver_configure(core=core, args=args)
        if any(self.has_impls(name) for name in AUTH_HOOKS):
            self.auth = PluginAuth(self)
        if any(self.has_impls(name) for name in EVENT_HOOKS):
            core.change_listeners.append(self.events.on_commit)

    def add_routes(self, app: Any, core: Core) -> None:
        """The plugins' routes, after the API's: a route with exactly the rule and method of one
        already there is refused (logged), so a plugin cannot replace an API route by mistake."""
        before = {(r.rule, r.method): r for r in app.routes}
        count = len(app.routes)
        self.hook.devpiserver_add_routes(app=app, core=core)
        for route in app.routes[count:]:
            original = before.get((route.rule, route.method))
            if original is not None:
                log.error("route %s %s of %s would replace the server's own: ignored", route.method,
                          route.rule, getattr(route.callback, "__module__", "?"))
                app.router.add(route.rule, route.method, original, name=original.name)

    def blob_store(self, core: Core, url: str) -> Any:
        store = self.hook.devpiserver_blob_store(core=core, url=url)
        if store is None:
            scheme = url.split(":", 1)[0]
            raise SystemExit(f"devpi server: no plugin provides blob storage for {scheme!r} URLs "
                             f"(--blob-storage {url})")
        return store


class PluginAuth:
    """Authentication asking plugins first, then the local password or token; only in use
    when some plugin implements an auth hook (otherwise the core asks the local check
    directly, with no hook call per request)."""

    def __init__(self, pm: PluginManager):
        self.password = pm.hook.devpiserver_auth_password if pm.has_impls("devpiserver_auth_password") else None
        self.token = pm.hook.devpiserver_auth_token if pm.has_impls("devpiserver_auth_token") else None
        self.groups = pm.hook.devpiserver_auth_groups if pm.has_impls("devpiserver_auth_groups") else None

    def authenticate(self, core: Core, user: str, secret: str) -> Identity | None:
        from .accounts.auth import Identity, TokenSigner

        decided: list[str] | bool | None = None
        if self.token is not None:
            decided = self.token(user=user, token=secret)
        if decided is None and self.password is not None and not TokenSigner.looks_like_token(secret):
            decided = self.password(user=user, password=secret)
        if decided is False:
            return None
        if decided is None:
            assert core.auth is not None
            pwhash = core.pwhash_of(user)
            if pwhash is None and TokenSigner.looks_like_token(secret):
                # the token /+login gave a user a plugin accepted who has no local account
                if not core.auth.tokens.check(user, secret, ""):
                    return None
                ident = Identity(user)
            else:
                ident = core.auth.authenticate(user, secret, pwhash)
            if ident is None:
                return None
            groups = list(ident.groups)
        else:
            groups = [str(g) for g in decided] if isinstance(decided, list | tuple) else []
        for group in self.groups_of(user):
            if group not in groups:
                groups.append(group)
        return Identity(user, tuple(groups))

    def groups_of(self, user: str) -> list[str]:
        """The groups plugins give ``user`` (devpiserver_auth_groups), each once."""
        groups: list[str] = []
        if self.groups is not None:
            for more in self.groups(user=user):
                groups.extend(str(g) for g in more or () if str(g) not in groups)
        return groups


def _rolled_back(fn: Callable, plugin_name: str, hook_name: str) -> Callable:
    """A hook that writes inside the request's transaction: a failure must undo the whole
    write (its rows may be half written, and on PostgreSQL the transaction is aborted), so it
    ends the request with a JSON error naming the plugin instead of being ignored."""
    @functools.wraps(fn)
    def rolled_back(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except APIError:
            raise
        except Exception as e:
            log.exception("plugin %s failed in %s (the write was rolled back)", plugin_name, hook_name)
            raise APIError(500, f"plugin {plugin_name} failed in {hook_name}; nothing was written") from e
    return rolled_back


def _guarded(fn: Callable, plugin_name: str, hook_name: str) -> Callable:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except APIError:
            raise
        except Exception as e:
            if log.hasHandlers():  # the server's log: with the traceback
                log.exception("plugin %s failed in %s (ignored)", plugin_name, hook_name)
            else:  # before logging is set up (parsing the command line): one line, as every CLI error
                log.error("plugin %s failed in %s (ignored): %s: %s", plugin_name, hook_name,
                          type(e).__name__, e)
            return None
    return guarded


class EventDispatcher:
    """Turns committed changes into the event hooks, called in one thread in commit order."""

    def __init__(self, pm: PluginManager):
        self.pm = pm
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(MAX_PENDING_EVENTS)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def on_commit(self, serial: int, changes: list[dict[str, Any]]) -> None:
        for change in changes:
            event = _event_of(serial, change)
            if event is not None:
                self.post(*event)

    def push(self, serial: int, index: str, project: str, version: str, target: str) -> None:
        if self.pm.has_impls("devpiserver_on_push"):
            self.post("devpiserver_on_push", {"serial": serial, "index": index, "project": project,
                                              "version": version, "target": target})

    def post(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="plugin-events", daemon=True)
                    self._thread.start()
        try:
            self._queue.put_nowait((hook_name, kwargs))
        except queue.Full:
            log.error("plugin events: %d waiting, dropped %s of serial %s", MAX_PENDING_EVENTS, hook_name,
                      kwargs.get("serial"))

    def _run(self) -> None:
        while True:
            hook_name, kwargs = self._queue.get()
            try:
                getattr(self.pm.hook, hook_name)(**kwargs)
            except Exception:  # an internal plugin's error: the next event still goes out
                log.exception("event hook %s failed", hook_name)
            finally:
                self._queue.task_done()

    def wait_idle(self, timeout: float) -> bool:
        """At a clean stop: let the events of the last commits reach the plugins, for at most
        ``timeout`` seconds (a plugin stuck in a hook must not hold the stop)."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("plugin events: %d not delivered at stop", self._queue.unfinished_tasks)
                    return False
                self._queue.all_tasks_done.wait(left)
        return True


def _event_of(serial: int, c: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    kind, op = c.get("kind"), c.get("op")
    if kind == "file" and op == "add":
        return "devpiserver_on_upload", {
            "serial": serial, "index": c["index"], "project": c["project"], "version": c["version"],
            "filename": c["relpath"].rsplit("/", 1)[-1], "rel": c.get("rel", "releasefile")}
    if kind == "file" and op == "delete":
        return "devpiserver_on_delete", {"serial": serial, "index": c["index"], "project": c["project"],
                                         "version": c["version"], "filename": c["relpath"].rsplit("/", 1)[-1]}
    if kind == "release" and op == "delete":
        return "devpiserver_on_delete", {"serial": serial, "index": c["index"], "project": c["project"],
                                         "version": c["version"], "filename": None}
    if kind == "project" and op == "delete":
        return "devpiserver_on_delete", {"serial": serial, "index": c["index"], "project": c["project"],
                                         "version": None, "filename": None}
    if kind == "testrun" and op == "finish":
        return "devpiserver_on_testrun_finished", {"serial": serial, "index": c.get("index", ""),
                                                   "run_id": c["run"], "status": c.get("status", "")}
    return None


def make_plugin_manager() -> PluginManager:
    """The server's own parts, the installed plugins and those named in DEVPI_SERVER_PLUGINS."""
    pm = PluginManager()
    pm.load_internal()
    pm.load_entry_points()
    if os.environ.get("DEVPI_SERVER_PLUGINS"):
        pm.load_modules(os.environ["DEVPI_SERVER_PLUGINS"])
    return pm
