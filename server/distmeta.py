"""Core metadata of uploaded distributions, read from the file itself.

The form fields a client sends are a claim; the archive is the truth. We open
the archive (which also proves it is not truncated), read its metadata with
pkginfo, and for wheels keep the raw METADATA bytes so they can be served as
the PEP 658 ``.metadata`` file.
"""
from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIST_KEYS = ("platform", "classifiers", "supported_platform", "provides", "requires", "obsoletes",
             "project_urls", "provides_dist", "obsoletes_dist", "requires_dist", "requires_external",
             "provides_extras", "dynamic", "license_file")
SCALAR_KEYS = ("name", "version", "metadata_version", "summary", "home_page", "author", "author_email",
               "maintainer", "maintainer_email", "license", "description", "keywords", "download_url",
               "comment", "requires_python", "description_content_type", "license_expression")
METADATA_KEYS = SCALAR_KEYS + LIST_KEYS


class BadDistribution(ValueError):
    """The upload is not a readable distribution; the message says why."""


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


def read_distribution(path: Path, filename: str) -> DistInfo:
    """Open the archive and return its metadata, or raise BadDistribution."""
    import pkginfo

    core: bytes | None = None
    try:
        if filename.endswith(".whl"):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise BadDistribution(f"{filename}: corrupt member {bad}")
                names = [n for n in zf.namelist()
                         if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
                if len(names) != 1:
                    raise BadDistribution(f"{filename}: no .dist-info/METADATA in wheel")
                core = zf.read(names[0])
            dist = pkginfo.Wheel(str(path))
        elif filename.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")):
            _check_archive(path, filename)
            dist = pkginfo.SDist(str(path))
        else:
            return DistInfo({}, None)
    except BadDistribution:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, KeyError) as e:
        raise BadDistribution(f"{filename} is not a readable archive: {e}") from None
    if not getattr(dist, "name", None) or not getattr(dist, "version", None):
        raise BadDistribution(f"{filename}: no name/version in its metadata")
    values = {key: getattr(dist, key, None) for key in METADATA_KEYS}
    return DistInfo(clean_metadata(values), core)


def _check_archive(path: Path, filename: str) -> None:
    """Read every member header (and body) so a truncated upload is refused."""
    if filename.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            if zf.testzip() is not None:
                raise BadDistribution(f"{filename}: corrupt zip")
        return
    with tarfile.open(path) as tf:
        for member in tf:
            if member.isfile():
                f = tf.extractfile(member)
                if f is not None:
                    while f.read(1 << 20):
                        pass
