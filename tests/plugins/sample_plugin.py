"""A plugin using every kind of hook, loaded by the tests through DEVPI_SERVER_PLUGINS."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from devpi.server.hooks import ConfigKey, IndexType, hookimpl, json_response
from devpi.server.repos.repository import EmptyRepository
from devpi.server.store.blobstore import BlobStore

events: list[list] = []
_lock = threading.Lock()
greeting = {"text": ""}


def _ticket(value):
    value = str(value)
    if not value.startswith("T-"):
        raise ValueError(f"a ticket looks like T-123, not {value!r}")
    return value


@hookimpl
def devpiserver_add_parser_options(parser):
    parser.add_argument("--sample-greeting", default="hi")


hook_calls = {"n": 0}


def _count_call(hook_name, hook_impls, kwargs):
    hook_calls["n"] += 1


@hookimpl
def devpiserver_configure(core, args):
    greeting["text"] = args.sample_greeting
    # every hook call from now on is counted, to show which requests call hooks at all
    core.plugins.add_hookcall_monitoring(_count_call, lambda *a: None)


@hookimpl
def devpiserver_add_routes(app):
    app.route("/+sample", "GET", lambda: json_response({"greeting": greeting["text"], "events": events}))
    app.route("/+sample/calls", "GET", lambda: json_response(hook_calls))


@hookimpl
def devpiserver_indexconfig_keys(index_type):
    return [ConfigKey("ticket", _ticket)] if index_type == "stage" else None


@hookimpl
def devpiserver_index_types():
    return [IndexType(os.environ.get("SAMPLE_INDEX_TYPE", "notes"), lambda core, ix: EmptyRepository(ix.fullname),
                      keys=(ConfigKey("topic", str),), defaults=lambda owner: {"topic": f"{owner}'s"})]


@hookimpl
def devpiserver_auth_password(user, password):
    if user == "ext":
        return ["team"] if password == "outside" else False
    return None


@hookimpl
def devpiserver_auth_groups(user):
    return ["everyone"]


@hookimpl
def devpiserver_blob_store(core, url):
    if url.startswith("sample://"):
        return BlobStore(Path(url[len("sample://"):]))
    return None


def _event(*row):
    with _lock:
        events.append(list(row))


@hookimpl
def devpiserver_on_upload(serial, index, project, version, filename, rel):
    _event("upload", serial, index, project, version, filename, rel)


@hookimpl
def devpiserver_on_push(serial, index, project, version, target):
    _event("push", serial, index, project, version, target)


@hookimpl
def devpiserver_on_delete(serial, index, project, version, filename):
    _event("delete", serial, index, project, version, filename)


@hookimpl
def devpiserver_on_testrun_finished(serial, index, run_id, status):
    _event("testrun", serial, index, run_id, status)


@hookimpl
def devpiserver_web_project_extras(index, project):
    return f'<p id="sample-extra">extra for {project} on {index}</p>'


@hookimpl
def devpiserver_web_version_extras(index, project, version):
    return f'<p id="sample-version-extra">{project} {version}</p>'


@hookimpl
def devpiserver_wsgi_middleware(core):
    def wrap(app):
        def tagged(environ, start_response):
            def start(status, headers, exc_info=None):
                headers.append(("X-Sample-Plugin", "seen"))
                return start_response(status, headers, exc_info)
            return app(environ, start)
        return tagged
    return wrap


def _not_the_status():
    return json_response({"hijacked": True})


@hookimpl(specname="devpiserver_add_routes")
def add_a_route_of_the_server(app):
    app.route("/+status", "GET", _not_the_status)  # refused: the server's own route
