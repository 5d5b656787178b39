"""Documentation zips: refused at upload when unpacking or serving them would be unsafe.

A doc zip is later served member by member as a static site (devpi.web.docs), so an
entry that climbs out of its directory, an absolute path, a symlink, an encrypted
member or one compressed in a way Python cannot read, and a zip bomb (too many
members, a member or a total too large, an absurd compression ratio) are refused
before anything is stored. The limits are documented in doc/server.md ("Upload
limits"); an admin or extension may change them through ``core.config.extra``.
"""
from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .ziplimits import ZipTooLarge, check_zip_directory

# What Python's zipfile reads: stored, deflate, bzip2, lzma. Anything else (e.g. 99,
# WinZip's AES) cannot be served.
READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
ENCRYPTED_FLAG = 0x1


class BadDocZip(ValueError):
    pass


@dataclass(frozen=True)
class DocLimits:
    max_unpacked: int = 1024 * 1024 * 1024  # all members together, decompressed
    max_member: int = 128 * 1024 * 1024  # one member, decompressed
    max_members: int = 50_000
    max_name: int = 1024  # characters of a member's path
    max_ratio: int = 200  # decompressed : compressed, for members over ratio_from bytes
    ratio_from: int = 1024 * 1024

    @classmethod
    def from_config(cls, extra: dict[str, Any]) -> DocLimits:
        return cls(max_unpacked=int(extra.get("max_doc_unpacked", cls.max_unpacked)),
                   max_member=int(extra.get("max_doc_member", cls.max_member)),
                   max_members=int(extra.get("max_doc_members", cls.max_members)))


def check_doc_zip(path: Path, limits: DocLimits = DocLimits()) -> list[zipfile.ZipInfo]:
    try:
        check_zip_directory(path, limits.max_members, "the zip")
    except ZipTooLarge as e:
        raise BadDocZip(str(e)) from None
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadDocZip(f"not a zip file: {e}") from None
    with zf:
        total = 0
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise BadDocZip(f"{len(infos)} entries, the limit is {limits.max_members}")
        for info in infos:
            name = info.filename
            if len(name) > limits.max_name:
                raise BadDocZip(f"entry {name[:60]!r}... has a name of {len(name)} characters, "
                                f"the limit is {limits.max_name}")
            _check_name(name)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BadDocZip(f"entry {name!r} is a symbolic link")
            if info.flag_bits & ENCRYPTED_FLAG:
                raise BadDocZip(f"entry {name!r} is encrypted")
            if info.compress_type not in READABLE_METHODS:
                raise BadDocZip(f"entry {name!r} uses compression method {info.compress_type}, "
                                f"which is not supported (use deflate)")
            if info.file_size > limits.max_member:
                raise BadDocZip(f"entry {name!r} unpacks to {info.file_size} bytes, "
                                f"the limit is {limits.max_member} bytes")
            if (info.file_size > limits.ratio_from
                    and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
                raise BadDocZip(f"entry {name!r} is compressed more than {limits.max_ratio}:1 (a zip bomb?)")
            total += info.file_size
            if total > limits.max_unpacked:
                raise BadDocZip(f"unpacks to more than {limits.max_unpacked} bytes")
        try:
            # zipfile reads a member only up to its declared size; a header that lies then
            # fails the CRC check here, so no member can serve more than was checked above
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as e:
            if isinstance(e, OSError) and e.errno is not None:
                raise  # our disk, not the zip
            raise BadDocZip(f"corrupt entry: {e}") from None
        if bad is not None:
            raise BadDocZip(f"corrupt entry {bad!r}")
        return infos


def _check_name(name: str) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    drive_like = bool(pure.parts) and ":" in pure.parts[0]
    if name.startswith(("/", "\\")) or ".." in pure.parts or drive_like:
        raise BadDocZip(f"entry {name!r} points outside the documentation tree")
    if "\x00" in name:
        raise BadDocZip(f"entry {name!r} has a NUL byte")
