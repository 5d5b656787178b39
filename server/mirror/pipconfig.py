"""Which upstream index pip on this machine uses, asked of pip itself.

The default upstream of ``root/pypi`` is whatever a plain ``pip install``
here would use: PIP_INDEX_URL, then pip's configuration files, then pip's
built-in default. We never write a public index's address into our code.
"""
from __future__ import annotations

import os


def pip_index_url() -> str:
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env
    try:
        from pip._internal.configuration import Configuration
        from pip._internal.models.index import PyPI
    except ImportError as e:  # pragma: no cover - pip is part of every venv
        raise RuntimeError("pip is not importable; give the upstream with --mirror-url") from e
    config = Configuration(isolated=False)
    try:
        config.load()
        for key in ("global.index-url", "install.index-url", ":env:.index-url"):
            try:
                value = config.get_value(key)
            except Exception:
                continue
            if value:
                return str(value)
    except Exception:
        pass
    return PyPI.simple_url
