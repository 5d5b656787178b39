"""uvicorn's protocol and server modules, imported without its package ``__init__``.

``uvicorn/__init__.py`` imports ``uvicorn.main``, its command line, which
brings click and the reloader's multiprocessing: a third of uvicorn's import
time at start-up, for parts this server never uses. :func:`load` registers the
package as a bare module (its ``__path__``, not its ``__init__``), so the
submodules the server needs import alone. Anything that later asks the bare
package for a name (``uvicorn.Config``, ``uvicorn.__version__``) runs the real
``__init__`` there and then, so the package behaves as uvicorn's own.
"""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

# names of the package that live in modules without the command line (uvicorn.lifespan.off
# does ``from uvicorn import Config``)
_LIGHT = {"Config": "uvicorn.config", "Server": "uvicorn.server"}


def _bare_package() -> None:
    """Put a not-yet-initialised ``uvicorn`` into ``sys.modules`` (unless it is imported)."""
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not a plain package: the normal import below does the work
    package = importlib.util.module_from_spec(spec)

    def __getattr__(name: str) -> object:
        if name in _LIGHT:  # uvicorn's own modules import these from the package
            value = getattr(importlib.import_module(_LIGHT[name]), name)
            setattr(package, name, value)
            return value
        if name.startswith("__") and name.endswith("__") and name not in ("__version__", "__all__"):
            raise AttributeError(name)  # the import system's probes: no reason to initialise
        del package.__getattr__  # type: ignore[attr-defined]
        spec.loader.exec_module(package)  # type: ignore[union-attr]
        return getattr(package, name)

    package.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules["uvicorn"] = package


def load() -> tuple[ModuleType, ModuleType, ModuleType]:
    """uvicorn's ``protocols.http.httptools_impl``, ``config`` and ``server`` modules."""
    _bare_package()
    # import_module, not ``from uvicorn import config``: a from-import asks the package for
    # the name first, which would run its __init__
    return tuple(importlib.import_module(f"uvicorn.{name}")  # type: ignore[return-value]
                 for name in ("protocols.http.httptools_impl", "config", "server"))
