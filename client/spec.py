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


def own_versions(hub: Hub, index: str, spec: Spec, text: str) -> tuple[str, dict[str, Any], list[str]]:
    """(project URL, its JSON, the matching versions) of ``spec`` on ``index`` itself (not
    inherited), for the commands that change versions there (remove, yank); a missing
    project or no match ends the command with one line."""
    iname = hub.index_name(index)
    url = f"{index}/{normalize(spec.name)}"
    reply = hub.request("GET", url, params={"ignore_bases": ""}, check=False)
    if reply.status_code == 404:
        hub.project_not_found(index, spec.name, reply)
    if reply.status_code >= 400:
        hub.fatal(f"project {spec.name} on index {iname}: {reply.error_text()}")
    data = reply.result if isinstance(reply.result, dict) else {}
    versions = [v for v in sort_versions(list(data)) if spec.matches(v)]
    if not versions:
        hub.fatal(f"no version of {spec.name} matching {text!r} on index {iname}")
    return reply.url, data, versions
