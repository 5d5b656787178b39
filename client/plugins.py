"""Finding, loading and calling client plugins (hook specification: client/hooks.py).

A plugin is third-party code running inside every ``devpi`` it is loaded
into, so each step that runs it is fenced: a plugin that fails to import or
to register is one warning line naming it (the command goes on without it),
and one whose hook or command raises ends the command with one error line
naming it (``--debug`` shows the traceback). Nothing is loaded, nor pluggy
imported, for a command that needs no hook: main.py asks for plugins only
for commands that are not built in, the top-level help and ``--version``,
and login.py when it has no password.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from devpi.client.errors import DevpiError, one_line

ENTRY_POINT_GROUP = "devpi_client"  # also devpi.client.hooks.ENTRY_POINT_GROUP (that module imports pluggy)


@dataclass
class LoadedPlugin:
    """A plugin that loaded: its entry point name and the distribution that provides it."""

    name: str
    dist: str
    version: str


def _describe_error(e: BaseException) -> str:
    return one_line(f"{type(e).__name__}: {e}")


def _warn(msg: str) -> None:
    print(f"devpi: warning: {one_line(msg)}", file=sys.stderr, flush=True)


@dataclass
class ClientPlugins:
    """The loaded plugins of this process and their pluggy manager (None when there are none)."""

    pm: Any = None
    loaded: list[LoadedPlugin] = field(default_factory=list)

    @classmethod
    def load(cls) -> ClientPlugins:
        """Load every plugin of the entry-point group; a broken one is a warning, not an end."""
        eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        if not eps:
            return cls()
        import pluggy
        from devpi.client import hooks

        pm = pluggy.PluginManager(hooks.PROJECT)
        pm.add_hookspecs(hooks)
        plugins = cls(pm)
        for ep in eps:
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else "?"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as e:
                _warn(f"client plugin {ep.name!r} ({dist_name} {version}) not loaded: {_describe_error(e)}")
                continue
            unknown = sorted(hc.name for hc in pm.get_hookcallers(plugin) or [] if hc.spec is None)
            if unknown:  # a typo, or a hook of a newer devpi: it would never be called
                _warn(f"client plugin {ep.name!r} ({dist_name} {version}) implements unknown hooks: "
                      f"{', '.join(unknown)}")
            plugins.loaded.append(LoadedPlugin(ep.name, dist_name, version))
        return plugins

    def _impls(self, hookname: str) -> list[Any]:
        """The hook's implementations in pluggy's call order (registered last, called first)."""
        if self.pm is None:
            return []
        return list(reversed(getattr(self.pm.hook, hookname).get_hookimpls()))

    @staticmethod
    def _call(impl: Any, **kwargs: Any) -> Any:
        return impl.function(*[kwargs[name] for name in impl.argnames])

    def describe(self) -> list[str]:
        """One line per loaded plugin, for ``devpi --version``."""
        return [f"client plugin {p.name}: {p.dist} {p.version}" for p in self.loaded]

    def get_password(self, url: str, username: str) -> tuple[str, str] | None:
        """``(password, plugin name)`` from the first plugin that has one, else None."""
        for impl in self._impls("devpiclient_get_password"):
            try:
                password = self._call(impl, url=url, username=username)
            except Exception as e:
                raise DevpiError(f"client plugin {impl.plugin_name!r} failed to look up the password of "
                                 f"{username} at {url}: {_describe_error(e)}") from e
            if password is None:
                continue
            if not isinstance(password, str):
                raise DevpiError(f"client plugin {impl.plugin_name!r} returned a "
                                 f"{type(password).__name__} as the password, not a string")
            return password, impl.plugin_name
        return None

    def add_commands(self, subparsers: Any) -> None:
        """Let every plugin add its subcommands; their functions are fenced as one-line errors."""
        for impl in self._impls("devpiclient_add_commands"):
            before = set(subparsers.choices)
            try:
                self._call(impl, subparsers=subparsers)
            except Exception as e:
                _warn(f"client plugin {impl.plugin_name!r} could not add its commands: {_describe_error(e)}")
            finally:
                _fence_new_commands(subparsers, before, impl.plugin_name)
        for impl in self._impls("devpiclient_subcommands"):
            before = set(subparsers.choices)
            try:
                for add_arguments, name, location in self._call(impl) or []:
                    _add_located_command(subparsers, add_arguments, name, location)
            except Exception as e:
                _warn(f"client plugin {impl.plugin_name!r} could not add its commands: {_describe_error(e)}")
            finally:
                _fence_new_commands(subparsers, before, impl.plugin_name)


def _add_located_command(subparsers: Any, add_arguments: Any, name: str, location: str) -> None:
    """A command in the original devpi-client's shape: arguments function, name, "module:function"."""
    from devpi.client.cli import add_command

    modname, _, funcname = location.partition(":")
    handler = getattr(importlib.import_module(modname), funcname)
    doc = (handler.__doc__ or name).strip()
    parser = add_command(subparsers, name, handler, help=doc.splitlines()[0], description=doc)
    add_arguments(parser)


def _fence_new_commands(subparsers: Any, before: set[str], plugin: str) -> None:
    for name in set(subparsers.choices) - before:
        parser = subparsers.choices[name]
        func = parser.get_default("func")
        if func is not None and not getattr(func, "_devpi_plugin", None):
            parser.set_defaults(func=_fenced(func, plugin, name))


def _fenced(func: Any, plugin: str, command: str) -> Any:
    """``func(hub, args)`` whose unexpected exceptions become one error line naming the plugin."""
    def run(hub: Any, args: argparse.Namespace) -> Any:
        try:
            return func(hub, args)
        except (DevpiError, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as e:
            if getattr(hub, "debug", False):
                raise
            raise DevpiError(f"client plugin {plugin!r} failed in 'devpi {command}': "
                             f"{_describe_error(e)} (run with --debug for a traceback)") from e
    run._devpi_plugin = plugin  # type: ignore[attr-defined]
    return run


_plugins: ClientPlugins | None = None


def get_plugins() -> ClientPlugins:
    """This process's plugins, loaded on first use."""
    global _plugins
    if _plugins is None:
        _plugins = ClientPlugins.load()
    return _plugins
