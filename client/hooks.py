"""The hook specification of the ``devpi`` command: what a client plugin can do.

A plugin is a module (or object) named by an entry point in the group
``devpi_client`` of its distribution's metadata::

    [project.entry-points.devpi_client]
    hello = "devpi_hello.plugin"

and marks its hook functions with :data:`hookimpl`. The markers' project name
is ``devpiclient``, the original devpi-client's, and the hooks keep its names
and arguments, so plugins written for it work unchanged where they only use
these hooks (keyring's ``devpi_client`` plugin does: installing keyring makes
``devpi login USER`` take the password from the keyring).

Plugins are loaded when a hook is needed: for a command that is not built in,
for the top-level help and ``--version``, and when ``devpi login`` has no
password. A plugin that fails to load, or whose hook raises, is reported in one
line naming it (client/plugins.py); it never ends in a traceback.
"""
from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "devpiclient"
ENTRY_POINT_GROUP = "devpi_client"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def devpiclient_add_commands(subparsers: Any) -> None:
    """Add subcommands to the ``devpi`` command.

    ``subparsers`` is the argparse subparsers object of ``devpi``; register each
    command with :func:`devpi.client.cli.add_command`, as the built-in
    commands do::

        from devpi.client.cli import add_command

        @hookimpl
        def devpiclient_add_commands(subparsers):
            p = add_command(subparsers, "hello", run_hello, help="say hello")
            p.add_argument("name")

    The command's function is called as ``func(hub, args)``: ``hub`` is the
    :class:`devpi.client.hub.Hub` (``hub.info``, ``hub.fatal``, ``hub.request``,
    ``hub.state``), ``args`` the parsed namespace; it returns the exit code
    (None is 0). A name that is already taken is an error of the plugin.
    """


@hookspec
def devpiclient_subcommands() -> list[tuple[Any, str, str]]:
    """Add subcommands, the original devpi-client's way.

    Returns a list of ``(add_arguments, name, "module:function")``:
    ``add_arguments(parser)`` adds the command's arguments, the handler named
    by the location is called as ``handler(hub, args)`` and its docstring is
    the command's help. Prefer :func:`devpiclient_add_commands` in new
    plugins; this hook exists so plugins written for the original work.
    """


@hookspec(firstresult=True)
def devpiclient_get_password(url: str, username: str) -> str | None:
    """The password of ``username`` at the server ``url``, or None if the plugin has none.

    Called by ``devpi login USER`` when no ``--password`` is given, before it
    prompts; the first plugin returning a password wins (plugins registered
    later are asked first). The use case is a keyring.
    """
