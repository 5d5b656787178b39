"""The server's hook specification: every point where a plugin can add to devpi-server.

A plugin is a module (or any object) with functions named like the hooks below,
each marked with ``hookimpl``::

    from devpi.server.hooks import hookimpl

    @hookimpl
    def devpiserver_add_routes(app, core):
        app.route("/+hello", "GET", lambda: {"hello": "world"})

and it is found through the entry-point group ``devpi_server`` of its
distribution (see doc/plugins.md). The mirror, test runs and the web UI are
registered through these same hooks (server/plugins.py).

The hooks are pluggy's (as in pytest, tox and the original devpi): a plugin
implements the ones it needs, each taking only the arguments it uses (by name). A hook marked *first result* stops at the first implementation that
returns something other than None. Where a hook is called is said in its
docstring; none is called on the cached simple-page path, which answers
without asking anyone.

Errors: an exception from a third-party implementation is logged with the
plugin's name and the call goes on as if it had returned None (see
server/plugins.py); a request, commit or start never fails because of it.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    import bottle

    from .core import Core
    from .repos.repository import Repository
    from .store.catalog import IndexRow

PROJECT = "devpi_server"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ConfigKey(NamedTuple):
    """An index config key a plugin adds (``devpiserver_indexconfig_keys``).

    ``normalise`` takes the value a client sent (JSON, or a string from ``key=value``)
    and returns the value to store, or raises ``ValueError``/``TypeError`` with a
    message that the client sees as a 400."""

    name: str
    normalise: Callable[[Any], Any]
    default: Any = None
    is_list: bool = False


class IndexType(NamedTuple):
    """An index type (``devpiserver_index_types``): how its repository is made and which
    config keys it takes besides title/description/custom_data/volatile.

    ``make_repository(core, ix)`` returns the object that answers for the index (see
    server/repos/repository.py for what a repository offers); ``defaults(owner)`` the config of a
    new index of this type."""

    name: str
    make_repository: Callable[[Core, IndexRow], Repository]
    keys: tuple[ConfigKey, ...] = ()
    defaults: Callable[[str], dict[str, Any]] | None = None


def json_response(doc: Any, status: int = 200) -> bottle.HTTPResponse:
    """A JSON answer for a plugin's route (the server's app does not turn dicts into JSON)."""
    import bottle

    from .api.httpkit import JSON_CT

    resp = bottle.HTTPResponse(json.dumps(doc).encode(), status=status)
    resp.content_type = JSON_CT
    return resp


# -- start-up ----------------------------------------------------------------------------------
@hookspec
def devpiserver_add_parser_options(parser: argparse.ArgumentParser) -> None:
    """Add command-line options to ``devpi server`` (use an argument group and a prefix
    naming the plugin, e.g. ``--hello-greeting``). Called once, before the command line is
    parsed; read the values in ``devpiserver_configure`` as ``args.<dest>``."""


@hookspec
def devpiserver_configure(core: Core, args: argparse.Namespace) -> None:
    """Set up after the database is open and migrated, before the app is built and before
    the server listens: read your options from ``args``, add commit listeners
    (``core.change_listeners``) or background start-up tasks (``core.after_start``)."""


@hookspec
def devpiserver_add_routes(app: bottle.Bottle, core: Core) -> None:
    """Add HTTP routes to the server's bottle app (``app.route(path, method, callback)``).

    Called once while the app is built, after the built-in API routes; a route with the
    very rule and method of one of them is refused (logged). A callback returns ``json_response(doc)`` (above)
    or raises ``devpi.server.api.httpkit.APIError(status, message)`` for a JSON error.
    A route whose rule names an index as ``<user>`` and ``<index>`` parameters is read
    guarded: it runs only for readers of that index (``acl_read``; 401/403 for others),
    unless registered with ``read_acl=False`` (then the callback checks rights itself).
    A middleware (below) has no such guard: it must check ``core.may_read`` itself."""


@hookspec
def devpiserver_wsgi_middleware(core: Core) -> Callable[[Callable], Callable] | None:
    """A function wrapping the server's WSGI app (the web UI answers browsers this way),
    or None. Called once at start-up; wrappers apply in registration order, each around
    the previous. Requests answered from the simple-page cache never reach them."""


@hookspec
def devpiserver_shutdown(core: Core) -> None:
    """The server stops (SIGINT/SIGTERM): finish or flush work. Called once, after the last
    request, before the database is closed."""


# -- indexes ------------------------------------------------------------------------------------
@hookspec
def devpiserver_index_types() -> list[IndexType] | None:
    """Index types this plugin provides (``stage`` is built in; the mirror registers
    ``mirror`` here). Called once at start-up; a type named twice is refused at start."""


@hookspec
def devpiserver_indexconfig_keys(index_type: str) -> list[ConfigKey] | None:
    """Extra config keys an index of ``index_type`` accepts, with their validation. Called
    once per index type at start-up; the keys are then checked on every index create and
    modify like the built-in ones."""


# -- push ---------------------------------------------------------------------------------------
@hookspec
def devpiserver_check_push(core: Core, src: Any, target: str) -> None:
    """May this release be pushed? Raise ``APIError(409, why)`` to refuse. ``src`` is the
    release being pushed (``src.index``, ``src.project``, ``src.release``, ``src.files``);
    ``target`` names the target (an index, or an external repository's URL). Called in the
    pushing request, before anything is copied."""


@hookspec
def devpiserver_on_push_copy(tx: Any, src: Any, target: IndexRow, new_file_ids: dict[int, int]) -> None:
    """Copy what the plugin attaches to pushed files, inside the push's transaction
    (``tx.conn``; record changes with ``tx.record``). ``new_file_ids`` maps each source
    file's id to its copy's id. An exception here rolls the whole push back."""


# -- authentication -----------------------------------------------------------------------------
@hookspec(firstresult=True)
def devpiserver_auth_password(user: str, password: str) -> list[str] | bool | None:
    """Check a user's password against something else than the local database (LDAP ...).

    Return None when this plugin does not know the user (the next plugin, then the local
    password, decides), False to reject the login, or the user's groups (a list, maybe
    empty) to accept it. First result wins. Called for every request that carries a user
    and password (not a token): cache what is slow to ask."""


@hookspec(firstresult=True)
def devpiserver_auth_token(user: str, token: str) -> list[str] | bool | None:
    """Check a token this plugin issued (through its own route, say). Same answers as
    ``devpiserver_auth_password``; called before the server's own token check, for every
    request that carries a user and secret."""


@hookspec
def devpiserver_auth_groups(user: str) -> list[str] | None:
    """Groups of an authenticated user (used in ACLs as ``:group``), merged over all
    plugins and added to those an auth hook returned. Called once per authenticated
    request."""


# -- blobs --------------------------------------------------------------------------------------
@hookspec(firstresult=True)
def devpiserver_blob_store(core: Core, url: str) -> Any:
    """A blob store for ``--blob-storage URL`` when this plugin owns the URL's scheme, else
    None. It must offer the methods of ``devpi.server.store.blobstore.BlobStore`` (content-addressed
    by sha256; a blob is durable before ``put`` returns). Called once at start-up, only
    when the option is given; no plugin answering refuses the start."""


# -- events (after commit) ----------------------------------------------------------------------
@hookspec
def devpiserver_on_upload(serial: int, index: str, project: str, version: str, filename: str,
                          rel: str) -> None:
    """A file was added to ``index`` by the commit numbered ``serial``: an upload, a push
    into it, a documentation zip (``rel`` is ``releasefile``, ``doczip`` or ``toxresult``).

    Event hooks run after the transaction committed, one at a time in commit order, in the
    server's event thread: never on a request's path, so a slow or failing plugin delays
    only other events. They are also called for commits another server process made on a
    shared PostgreSQL database."""


@hookspec
def devpiserver_on_push(serial: int, index: str, project: str, version: str, target: str) -> None:
    """A release of ``index`` was pushed to the index ``target`` (on this server) in the
    commit ``serial``. ``devpiserver_on_upload`` is called for each file it copied too."""


@hookspec
def devpiserver_on_delete(serial: int, index: str, project: str, version: str | None,
                          filename: str | None) -> None:
    """Something was deleted in commit ``serial``: a file (``filename`` set), a release
    (``filename`` None) or a whole project (``version`` and ``filename`` None)."""


@hookspec
def devpiserver_on_testrun_finished(serial: int, index: str, run_id: int, status: str) -> None:
    """A live test run (``devpi test``) finished with ``status`` (``passed``, ``failed``, or
    ``error`` when the client sent no report, ``interrupted`` when it was stopped)."""


# -- web UI -------------------------------------------------------------------------------------
@hookspec
def devpiserver_web_project_extras(core: Core, index: str, project: str) -> str | None:
    """An HTML fragment shown at the end of a project's page in the web UI, or None.
    It is inserted as is: escape what you did not write (``markupsafe.escape``)."""


@hookspec
def devpiserver_web_version_extras(core: Core, index: str, project: str, version: str) -> str | None:
    """An HTML fragment shown at the end of a release's page in the web UI, or None."""
