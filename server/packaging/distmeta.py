"""Core metadata of uploaded distributions, read from the file itself.

The form fields a client sends are a claim; the archive is the truth. We open
the archive (which also proves it is not truncated), read its metadata with
pkginfo, and for wheels keep the raw METADATA bytes so they can be served as
the PEP 658 ``.metadata`` file.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pkginfo

from .names import is_bdist_dumb
from .ziplimits import ZipTooLarge, check_zip_directory

LIST_KEYS = ("platform", "classifiers", "supported_platform", "provides", "requires", "obsoletes",
             "project_urls", "provides_dist", "obsoletes_dist", "requires_dist", "requires_external",
             "provides_extras", "dynamic", "license_file")
SCALAR_KEYS = ("name", "version", "metadata_version", "summary", "home_page", "author", "author_email",
               "maintainer", "maintainer_email", "license", "description", "keywords", "download_url",
               "comment", "requires_python", "description_content_type", "license_expression")
METADATA_KEYS = SCALAR_KEYS + LIST_KEYS

# Limits on what an upload's metadata may be (doc/server.md "Upload limits"). METADATA
# and PKG-INFO are read whole into memory and their fields stored and served back, so
# each is capped; a bigger one is refused, never truncated.
MAX_METADATA_BYTES = 4 * 1024 * 1024  # a METADATA / PKG-INFO file, decompressed
MAX_DESCRIPTION = 4 * 1024 * 1024  # characters of the long description
MAX_FIELD = 64 * 1024  # characters of every other field, and of each entry of a list field
MAX_LIST_ITEMS = 1000  # entries of one list field (classifiers, requires_dist, ...)
MAX_UNPACKED = 1024 * 1024 * 1024  # a whole archive, decompressed (the default of read_distribution)
MAX_MEMBERS = 200_000  # entries of a distribution archive (each costs memory while it is read)
MAX_PKG_INFO_CANDIDATES = 16
CHUNK = 1024 * 1024


class BadDistribution(ValueError):
    """The upload is not a readable distribution; the message says why."""


class TooLarge(BadDistribution):
    """The upload is over one of the limits above: 413, the message names the limit."""


@dataclass
class DistInfo:
    metadata: dict[str, Any]
    core_metadata: bytes | None  # wheel METADATA for PEP 658


def empty_metadata(name: str, version: str) -> dict[str, Any]:
    md: dict[str, Any] = {k: "" for k in SCALAR_KEYS}
    md.update({k: [] for k in LIST_KEYS})
    md["name"], md["version"] = name, version
    return md


def clean_metadata(values: dict[str, Any]) -> dict[str, Any]:
    """Keep the known keys, lists as lists, and devpi's "UNKNOWN" as empty."""
    out: dict[str, Any] = {}
    for key in METADATA_KEYS:
        if key not in values:
            continue
        value = values[key]
        if key in LIST_KEYS:
            if value in (None, ""):
                value = []
            elif isinstance(value, str):
                value = [value]
            value = [str(v) for v in value]
        else:
            value = "" if value in (None, "UNKNOWN") else str(value)
        out[key] = value
    return out


def read_distribution(path: Path, filename: str, max_unpacked: int = MAX_UNPACKED) -> DistInfo:
    """Open the archive and return its metadata, or raise BadDistribution (TooLarge for a
    limit). ``filename`` says what kind of archive it is: the path's own name does not
    matter (temp files are not named after the upload)."""
    core: bytes | None = None
    try:
        if filename.endswith(".whl"):
            core = _wheel_metadata(path, filename, max_unpacked)
            raw = core
        elif is_bdist_dumb(filename):  # no metadata inside: the upload form's is used
            return DistInfo({}, None)
        elif filename.endswith(".zip"):
            raw = _zip_sdist_metadata(path, filename, max_unpacked)
        elif filename.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            raw = _tar_sdist_metadata(path, filename, max_unpacked)
        else:
            return DistInfo({}, None)
    except BadDistribution:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, KeyError, zlib.error,
            lzma.LZMAError, NotImplementedError, RuntimeError) as e:  # the last two: zip method, encryption
        if isinstance(e, OSError) and e.errno is not None:
            raise  # the server's own disk, not the upload (see diskfull)
        raise BadDistribution(f"{filename} is not a readable archive: {e}") from None
    dist = _Parsed(raw, filename)
    if not getattr(dist, "name", None) or not getattr(dist, "version", None):
        raise BadDistribution(f"{filename}: no name/version in its metadata")
    values = {key: getattr(dist, key, None) for key in METADATA_KEYS}
    md = clean_metadata(values)
    check_metadata_sizes(md, f"{filename}: metadata")
    return DistInfo(md, core)


def check_metadata_sizes(md: dict[str, Any], what: str) -> None:
    """Refuse a text field over its cap: every one is stored, indexed and served back in
    the version's JSON, so a megabyte summary costs on every page that lists it."""
    for key, value in md.items():
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_LIST_ITEMS:
            raise BadDistribution(f"{what}: {key} has {len(items)} entries, the limit is {MAX_LIST_ITEMS}")
        limit = MAX_DESCRIPTION if key == "description" else MAX_FIELD
        for item in items:
            if len(item) > limit:
                raise TooLarge(f"{what}: {key} is {len(item)} characters long, the limit is {limit}")


class _Parsed(pkginfo.Distribution):
    """pkginfo's parser over metadata bytes we read ourselves (through the caps below)."""

    def __init__(self, data: bytes, filename: str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkginfo warns about metadata versions newer than it knows
            self.parse(data)

    def read(self) -> bytes:  # pragma: no cover - parse() is given the bytes
        raise NotImplementedError


def _check_zip(zf: zipfile.ZipFile, filename: str, max_unpacked: int) -> None:
    """Refuse a zip that would unpack to more than ``max_unpacked`` bytes, then read every
    member (CRC check) so a truncated or corrupt upload is refused. zipfile reads a member
    only up to the size its directory declares, so checking the declared sizes first
    bounds the work even when a header lies (a lie then fails the CRC)."""
    total = 0
    for info in zf.infolist():
        total += info.file_size
        if total > max_unpacked:
            raise TooLarge(f"{filename} unpacks to more than {max_unpacked} bytes (the limit)")
    bad = zf.testzip()
    if bad is not None:
        raise BadDistribution(f"{filename}: corrupt member {bad}")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename: str) -> bytes:
    if info.file_size > MAX_METADATA_BYTES:
        raise TooLarge(f"{filename}: {info.filename} is {info.file_size} bytes, "
                       f"the limit for metadata is {MAX_METADATA_BYTES} bytes")
    with zf.open(info) as f:
        data = f.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise TooLarge(f"{filename}: {info.filename} is over the metadata limit of {MAX_METADATA_BYTES} bytes")
    return data


def _open_zip(path: Path, filename: str) -> zipfile.ZipFile:
    try:
        check_zip_directory(path, MAX_MEMBERS, filename)
    except ZipTooLarge as e:
        raise TooLarge(str(e)) from None
    return zipfile.ZipFile(path)


def _wheel_metadata(path: Path, filename: str, max_unpacked: int) -> bytes:
    with _open_zip(path, filename) as zf:
        infos = [i for i in zf.infolist()
                 if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/METADATA")]
        if len(infos) != 1:
            raise BadDistribution(f"{filename}: no .dist-info/METADATA in wheel")
        data = _read_member(zf, infos[0], filename)  # first: the cheap refusal of a metadata bomb
        _check_zip(zf, filename, max_unpacked)
        return data


def _best_pkg_info(candidates: list[tuple[str, bytes]], filename: str) -> bytes:
    """pkginfo's choice: the PKG-INFO with the fewest path parts that has a Metadata-Version."""
    for _name, data in sorted(candidates, key=lambda c: (c[0].count("/"), c[0])):
        if b"Metadata-Version" in data:
            return data
    if candidates:
        raise BadDistribution(f"{filename}: no Metadata-Version in its PKG-INFO")
    raise BadDistribution(f"{filename}: no PKG-INFO in the archive")


def _is_pkg_info(name: str) -> bool:
    return name.endswith("PKG-INFO") and name.count("/") <= 2


def _zip_sdist_metadata(path: Path, filename: str, max_unpacked: int) -> bytes:
    with _open_zip(path, filename) as zf:
        _check_zip(zf, filename, max_unpacked)
        found = [(i.filename, _read_member(zf, i, filename)) for i in zf.infolist() if _is_pkg_info(i.filename)]
        return _best_pkg_info(found[:MAX_PKG_INFO_CANDIDATES], filename)


class _Counted(io.RawIOBase):
    """A decompressed stream that stops with TooLarge past ``limit`` bytes: tar headers
    can declare anything, so the bytes actually inflated are what is counted."""

    def __init__(self, raw: BinaryIO, limit: int, filename: str):
        self._raw, self._limit, self._filename, self.count = raw, limit, filename, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._raw.read(len(buf))
        self.count += len(data)
        if self.count > self._limit:
            raise TooLarge(f"{self._filename} unpacks to more than {self._limit} bytes (the limit)")
        buf[:len(data)] = data
        return len(data)


def _tar_sdist_metadata(path: Path, filename: str, max_unpacked: int) -> bytes:
    """One pass over the archive as a stream: every member is read (so a truncated upload
    is refused), at most ``max_unpacked`` bytes inflated, PKG-INFO kept when it is small."""
    opener = {".bz2": bz2.open, ".xz": lzma.open}.get(Path(filename).suffix, gzip.open)
    found: list[tuple[str, bytes]] = []
    with opener(path, "rb") as raw:
        counted = io.BufferedReader(_Counted(raw, max_unpacked, filename), CHUNK)
        with tarfile.open(fileobj=counted, mode="r|") as tf:
            for count, member in enumerate(tf, 1):
                if count > MAX_MEMBERS:  # tarfile keeps every member's header in memory
                    raise TooLarge(f"{filename} has more than {MAX_MEMBERS} entries (the limit)")
                if not member.isfile():
                    continue
                f = tf.extractfile(member)
                if f is None:
                    continue
                if _is_pkg_info(member.name) and len(found) < MAX_PKG_INFO_CANDIDATES:
                    if member.size > MAX_METADATA_BYTES:
                        raise TooLarge(f"{filename}: {member.name} is {member.size} bytes, "
                                       f"the limit for metadata is {MAX_METADATA_BYTES} bytes")
                    found.append((member.name, f.read()))
                while f.read(CHUNK):
                    pass
    return _best_pkg_info(found, filename)
