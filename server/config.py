"""What a server is started with: ``ServerConfig``, and the parsers of option values.

Kept apart from the core (which owns running parts) and from ``main`` (which owns
the command line), so a plugin or a test can build a configuration without either.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def parse_size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().rstrip("b")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 500M or 2G)") from None


def parse_budget(text: str) -> int:
    """A byte budget (``--mirror-cache-size``): a size as ``parse_size`` reads it, 0 included."""
    value = parse_size(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 500M or 20G)")
    return value


def positive_int(text: str) -> int:
    """A count of threads, waiters or connections: 0 would make a lane that never answers."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A timeout: 0, a negative number, nan or inf would close at once or wait forever."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value



@dataclass
class ServerConfig:
    serverdir: Path
    host: str = "127.0.0.1"
    port: int = 3141
    storage_url: str | None = None
    root_passwd: str | None = None
    mirror_url: str | None = None
    offline: bool = False
    debug: bool = False
    max_upload_size: int = 512 * 1024 * 1024
    threads: int = 32
    outside_url: str | None = None
    request_timeout: float = 5.0  # how long a page waits for upstream before serving its stored copy
    trusted_proxy: str = "loopback"  # peers whose X-Outside-Url / X-Forwarded-* are believed
    login_rate: str = "10/60"  # failed logins per client address (``off`` disables)
    login_rate_user: str = "20/60"  # failed logins per user name, across addresses
    restrict_modify: tuple[str, ...] | None = None  # --restrict-modify; None: open, as the original
    # the mirror policy (mirror/policy.py): who besides root makes mirrors, which internal
    # destinations mirrors may reach, which other hosts non-root mirrors take files from
    mirror_creators: tuple[str, ...] = ()
    mirror_allow_hosts: tuple[str, ...] = ()
    mirror_file_hosts: tuple[str, ...] = ()
    mirror_max_file_size: int = 4 << 30  # a mirrored file whose size neither upstream nor its page states
    mirror_download_timeout: float = 3600.0  # seconds one upstream file download may take in all
    page_cache_size: int = 64 << 20  # bytes of rendered simple pages kept in memory
    static_dir: Path | None = None  # --static-dir: public pages and files for nginx (repos/static_view.py)
    mirror_memory: int = 64 << 20  # bytes of upstream pages each mirror keeps in memory
    mirror_cache_size: int | None = None  # bytes of cached mirror files kept (None: no budget)
    gc_interval: float = 3600.0  # seconds between collections of unreferenced blobs (0: none)
    gc_grace: float = 6 * 3600.0  # seconds a blob stays unreferenced before it is deleted
    disk_check_interval: float = 60.0  # seconds between budget checks and access-time flushes
    audit_keep: int = 100_000  # audit log entries kept (the oldest go first)
    metrics_allow: str = "loopback"  # client addresses that may read /+metrics (root may, from anywhere)
    min_free_space: int = 1 << 30  # bytes free on the server dir's disk below which /+health says 503
    workers: int = 1  # server processes sharing the listening socket (runtime/workers.py)
    worker: int | None = None  # this process's number among them (0 runs the once-per-dir work)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def storage(self) -> str:
        return self.storage_url or f"sqlite:///{self.serverdir / 'devpi.sqlite'}"


def storage_display(url: str) -> str:
    """A storage URL as the server shows it (log, /+status): without its credentials."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        url = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
