"""Parsing ``NAME``, ``NAME==VERSION`` and requirement specs given on the command line."""
from __future__ import annotations

import re
from typing import Any

from devpi.client.hub import Hub


def normalize(name: str) -> str:
    """PEP 503 name as used in devpi URLs."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Spec:
    """A project name plus an optional version filter."""

    def __init__(self, name: str, specifier: Any = None, text: str = "") -> None:
        self.name = name
        self.specifier = specifier
        self.text = text or name

    @property
    def has_version(self) -> bool:
        return self.specifier is not None and len(self.specifier) > 0

    def matches(self, version: str) -> bool:
        if not self.has_version:
            return True
        try:
            return self.specifier.contains(version, prereleases=True)
        except Exception:
            # a non-PEP-440 version (old mirrors) only matches an exact pin
            return any(s.operator in ("==", "===") and s.version == version for s in self.specifier)


def parse_spec(hub: Hub, text: str) -> Spec:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement:
        hub.fatal(f"invalid package spec {text!r}: expected NAME or NAME==VERSION (or NAME>=1.0 ...)")
    return Spec(req.name, req.specifier, text)


def sort_versions(versions: list[str]) -> list[str]:
    """Newest first; versions that do not parse sort last, by text."""
    from packaging.version import InvalidVersion, Version

    def key(v: str) -> Any:
        try:
            return (1, Version(v), "")
        except InvalidVersion:
            return (0, Version("0"), v)

    return sorted(versions, key=key, reverse=True)
