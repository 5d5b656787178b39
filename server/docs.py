"""Documentation zips: refused at upload when unpacking them would be unsafe.

A doc zip is later unpacked and served as a static site, so an entry that
climbs out of its directory, an absolute path, a symlink, or a total size
beyond the limit (a zip bomb) is refused before anything is stored.
"""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath


class BadDocZip(ValueError):
    pass


def check_doc_zip(path: Path, max_unpacked: int) -> list[zipfile.ZipInfo]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise BadDocZip(f"not a zip file: {e}") from None
    with zf:
        total = 0
        infos = zf.infolist()
        for info in infos:
            name = info.filename
            pure = PurePosixPath(name.replace("\\", "/"))
            drive_like = bool(pure.parts) and ":" in pure.parts[0]
            if name.startswith(("/", "\\")) or ".." in pure.parts or drive_like:
                raise BadDocZip(f"entry {name!r} points outside the documentation tree")
            if "\x00" in name:
                raise BadDocZip(f"entry {name!r} has a NUL byte")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BadDocZip(f"entry {name!r} is a symbolic link")
            total += info.file_size
            if total > max_unpacked:
                raise BadDocZip(f"unpacks to more than {max_unpacked} bytes")
        bad = zf.testzip()
        if bad is not None:
            raise BadDocZip(f"corrupt entry {bad!r}")
        return infos
