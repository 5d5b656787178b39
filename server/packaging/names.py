"""Names of users, indexes, projects, versions and distribution files.

Every name that reaches storage or a URL passes through here, so that one
place decides what is valid and what the canonical spelling is.
"""
from __future__ import annotations

import functools
import re

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# ASCII only, as the error message always said: look-alikes (Cyrillic "а", zero-width and
# bidi controls) would otherwise make a second "alice" that reads the same in every listing.
_USER_INDEX_NAME = re.compile(r"[A-Za-z0-9._@-]+")
_PROJECT_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_NORMALIZE = re.compile(r"[-_.]+")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".whl", ".tar.bz2", ".tar.xz", ".egg", ".exe", ".msi",
                    ".rpm", ".deb", ".dmg")


class InvalidName(ValueError):
    """A name that can never be stored; the message is meant for the user."""


def normalize_name(name: str) -> str:
    """PEP 503 normalisation: what URLs and storage key projects by."""
    return _NORMALIZE.sub("-", name).lower()


def is_user_name(name: str) -> bool:
    """Whether ``name`` could name a user or index (cheap: the length is checked first)."""
    return (bool(name) and len(name) <= 100 and _USER_INDEX_NAME.fullmatch(name) is not None
            and not name.startswith(("+", ".")))


def check_user_or_index_name(name: str, what: str = "name") -> str:
    if not is_user_name(name):
        raise InvalidName(f"invalid {what} {name[:100]!r}: use ASCII letters, digits and -._@ only")
    return name


def check_project_name(name: str) -> str:
    if not name or len(name) > 200 or not _PROJECT_NAME.fullmatch(name):
        raise InvalidName(f"invalid project name {name!r}: use ASCII letters, digits and ._- "
                          "starting and ending with a letter or digit")
    return name


@functools.lru_cache(maxsize=4096)
def canonical_version(version: str) -> str:
    """PEP 440's canonical spelling ("4.0.0" -> "4"); a string that is no PEP 440 version
    is its own canonical spelling. Stored with every release (``releases.canonical_version``)
    and asked again for each version an upload names, hence the small cache."""
    return canonicalize_version(version)


def is_project_name(name: str) -> bool:
    return bool(name) and len(name) <= 200 and _PROJECT_NAME.fullmatch(name) is not None


def check_version(version: str) -> Version:
    try:
        return Version(version)
    except InvalidVersion:
        raise InvalidName(f"invalid version {version!r}: not a PEP 440 version") from None


@functools.lru_cache(maxsize=100_000)
def version_key(version: str) -> tuple:
    """Sort key that orders PEP 440 versions correctly and puts anything else first.

    Cached: pages and the search index sort all versions of a project on every change."""
    try:
        return (1, Version(version), version)
    except InvalidVersion:
        return (0, Version("0"), version)


def check_filename(filename: str) -> str:
    """Refuse path tricks and control characters; a file name is a single path segment."""
    if (not filename or len(filename) > 255 or "/" in filename or "\\" in filename or "\x00" in filename
            or filename in (".", "..") or filename.startswith(".")
            or any(ord(c) < 32 or ord(c) == 127 for c in filename)):
        raise InvalidName(f"invalid filename {filename!r}")
    return filename


def split_dist_filename(filename: str) -> tuple[str, str]:
    """Return (name, version) as written in a distribution file name.

    Wheels and sdists use their specs (PEP 427 / 625); other archive kinds
    fall back to "name-version.ext" split at the last dash before a digit.
    """
    check_filename(filename)
    if not filename.endswith(ARCHIVE_SUFFIXES):
        raise InvalidName(f"{filename!r} is not a valid archive name")
    if filename.endswith(".whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion) as e:
            raise InvalidName(f"invalid wheel filename {filename!r}: {e}") from None
        return str(name), str(version)
    if filename.endswith((".tar.gz", ".zip")):
        try:
            name, version = parse_sdist_filename(filename)
            return str(name), str(version)
        except (InvalidSdistFilename, InvalidVersion):
            pass
    stem = filename
    for suffix in ARCHIVE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    m = re.match(r"^(.+?)-(\d.*)$", stem)
    if not m:
        raise InvalidName(f"cannot read name and version from filename {filename!r}")
    return m.group(1), m.group(2)


def filename_matches(filename: str, name: str, version: str) -> None:
    """Raise unless the file name names this project and version."""
    fname, fversion = split_dist_filename(filename)
    if normalize_name(fname) != normalize_name(name):
        raise InvalidName(f"filename {filename!r} does not belong to project {name!r}")
    if fversion != version and canonicalize_version(fversion) != canonicalize_version(version) \
            and not _legacy_build_of(filename, fversion, version):
        raise InvalidName(f"filename {filename!r} does not contain version {version!r}")


# What legacy build formats put after the version, which the name-version split above takes
# for part of it: an egg's ``-py3.11[-platform]``, and the platform of bdist_dumb
# (``.linux-x86_64.tar.gz``), bdist_wininst (``.win32[-py3.8].exe``) and bdist_msi. Only
# these shapes: ``1.0.post1`` or ``1.0.1`` stay other versions of "1.0".
_EGG_TAIL = re.compile(r"-py\d+(\.\d+)?(-[A-Za-z0-9_.-]+)?")
_PLATFORM_TAIL = re.compile(r"\.(linux|win|macosx|darwin|cygwin|mingw|freebsd|netbsd|openbsd|solaris|sunos|aix)"
                            r"[A-Za-z0-9_.-]*?(-py\d+(\.\d+)?)?")


_BDIST_DUMB = re.compile(r"^.+?-\d[^-]*?" + _PLATFORM_TAIL.pattern + r"\.(tar\.gz|tgz|tar\.bz2|tar\.xz|zip)$")


def is_bdist_dumb(filename: str) -> bool:
    """``NAME-VERSION.PLATFORM.tar.gz|zip``: a built tree without metadata, not an sdist."""
    return bool(_BDIST_DUMB.match(filename))


def _legacy_build_of(filename: str, fversion: str, version: str) -> bool:
    """Whether ``filename`` is an egg or bdist_dumb/wininst/msi build of ``version``
    (the original devpi-server stores them; installers ignore them)."""
    for candidate in dict.fromkeys((version, canonicalize_version(version))):
        if not fversion.startswith(candidate):
            continue
        tail = fversion[len(candidate):]
        if filename.endswith(".egg") and _EGG_TAIL.fullmatch(tail):
            return True
        if not filename.endswith((".whl", ".egg")) and _PLATFORM_TAIL.fullmatch(tail):
            return True
    return False
