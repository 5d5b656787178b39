"""A zip's directory checked before ``zipfile`` reads it: ``ZipFile()`` turns every entry
of the central directory into an object (some hundred bytes each), so a 500 MB upload of
empty entries would take gigabytes before any per-member check ran. The end record says
how many entries there are and how large the directory is; both are bounded first.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

MAX_DIRECTORY = 64 * 1024 * 1024  # bytes of a zip's central directory


class ZipTooLarge(ValueError):
    """The message names the limit."""


def check_zip_directory(path: Path, max_entries: int, what: str) -> None:
    """Raise ZipTooLarge if the zip declares more than ``max_entries`` entries or a directory
    over MAX_DIRECTORY bytes; a file without an end record is left for ``ZipFile`` to refuse.
    (The end record of a zip64 archive is the one ``zipfile`` itself reads.)"""
    with open(path, "rb") as f:
        try:
            end = zipfile._EndRecData(f)  # the same parse ZipFile starts with
        except OSError:
            return
    if not end:
        return
    entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if entries > max_entries:
        raise ZipTooLarge(f"{what} has {entries} entries, the limit is {max_entries}")
    if size > MAX_DIRECTORY:
        raise ZipTooLarge(f"{what}'s zip directory is {size} bytes, the limit is {MAX_DIRECTORY}")
