"""Blobs in an S3-compatible object store: ``--blob-storage s3://BUCKET/PREFIX``.

The same contract as the local store (store/blobstore.py), which this one extends for
everything that stays local: a writer spools the bytes to a temp file under the server
dir while hashing them, and ``commit`` PUTs the object under ``PREFIX/<sha256>`` (boto3
switches to a multipart upload above 8 MB) and reads its size back with a HEAD before it
returns; only then does the caller commit the row that names it. A process killed in
between leaves at worst an object no row names, which ``devpi gc`` deletes after the
grace period. Reads stream the object and hash it as they go, holding back the last
chunk until the hash matched, so an object changed in the bucket is never served;
``--blob-redirect SECONDS`` instead answers downloads with a presigned URL valid that
long (pip and uv check the sha256 of the link themselves).

A local cache (``s3-spool/cache``, shared by the workers of one server) keeps a copy of the
blobs written or downloaded lately, bounded by count and bytes (least recently used go
first). Downloads are answered from it: a CI stampede of 32 clients asking for the same
50 wheels costs 50 GETs from the bucket, not 800 GETs and as many HEADs (the scale-out
benchmark's ``ours-s3`` row: ×2.4 nginx's wall time before, see doc/performance.md). A copy
is hashed when it is made and again before it is served, unless this process hashed that
very file minutes ago (as the local store does); one that no longer matches is dropped
and fetched again, so a copy that rotted is never served. A blob bigger than an eighth of
the cache is streamed from the bucket instead, hashed as it goes.

Credentials, region and endpoint come from boto3's standard chain: ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``
and ``~/.aws/{config,credentials}``, an instance role. None of it is ever logged or shown.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .blobstore import CHUNK, BlobCorrupt, BlobEntry, BlobStore, BlobStoreUnavailable, _stamp

log = logging.getLogger("devpi.server.s3")

SCHEME = "s3://"
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,200}")
SHA256 = re.compile(r"[0-9a-f]{64}")
MULTIPART_THRESHOLD = 8 * 1024 * 1024
CACHE_FILES = 512  # local copies kept (see ``open_blob`` and ``path``)
CACHE_BYTES = 2 * 1024**3
CACHE_KEEP_RECENT = 120.0  # seconds a copy handed out is kept whatever the budget says
MAX_REDIRECT = 7 * 24 * 3600  # S3's limit for a presigned URL


@contextlib.contextmanager
def _remote(what: str) -> Iterator[None]:
    """boto3's failures as ``BlobStoreUnavailable`` (answered 503), with the S3 error code or
    the exception's class only: never its text, which may quote a request."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except Boto3Error as e:  # S3UploadFailedError: its text quotes the failed call
        raise BlobStoreUnavailable(f"S3 {what}: {type(e).__name__}") from None
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "?")
        raise BlobStoreUnavailable(f"S3 {what}: {code}") from None
    except BotoCoreError as e:
        raise BlobStoreUnavailable(f"S3 {what}: {type(e).__name__}") from None


class S3UrlError(ValueError):
    """A ``--blob-storage s3://`` URL that is not BUCKET/PREFIX."""


def parse_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix without slashes at either end).

    Strict on purpose: the prefix is every key's first part, so a ``..`` or an empty
    segment could make keys that another tool resolves outside it, and credentials in the
    URL would end up in process listings. The message never repeats the URL (it may hold
    a secret someone pasted into it)."""
    if not url.startswith(SCHEME):
        raise S3UrlError("an S3 blob store URL starts with s3://")
    rest = url[len(SCHEME):]
    if any(c in rest for c in "@?#\\%") or any(ord(c) < 33 or ord(c) > 126 for c in rest):
        raise S3UrlError("an S3 blob store URL is s3://BUCKET/PREFIX: no credentials, query, "
                         "escapes or spaces (credentials come from the AWS environment)")
    bucket, _, prefix = rest.partition("/")
    if not BUCKET.fullmatch(bucket) or ".." in bucket:
        raise S3UrlError("the bucket name must be 3-63 lower-case letters, digits, dots and hyphens")
    prefix = prefix.rstrip("/")
    segments = prefix.split("/") if prefix else []
    for seg in segments:
        if not PREFIX_SEGMENT.fullmatch(seg) or seg in (".", ".."):
            raise S3UrlError("each part of the key prefix must be letters, digits, '_', '.' or '-', "
                             "not empty, '.' or '..'")
    return bucket, prefix


def make_client() -> Any:
    """An S3 client from the standard AWS configuration, path-style (the form every
    S3-compatible server understands), with the retries boto3 calls standard."""
    import boto3
    from botocore.config import Config

    # botocore tells at INFO where it found the credentials and endpoint: noise in the server's log
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)

    return boto3.session.Session().client(
        "s3", config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 5},
                            connect_timeout=10, read_timeout=60, max_pool_connections=32))


class S3BlobStore(BlobStore):
    """Blobs at ``s3://bucket/prefix/<sha256>``; temp files and the cache under ``spool``."""

    def __init__(self, url: str, spool: Path, client: Any = None):
        self.bucket, self.prefix = parse_url(url)
        self.url = f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"
        self.client = client or make_client()
        self.redirect_seconds = 0  # set by --blob-redirect
        super().__init__(spool)
        self.cache_dir = self.root / "cache"
        self.cache_dir.mkdir(exist_ok=True)
        self._cache_lock = threading.Lock()
        self._fetches: dict[str, threading.Lock] = {}  # blob -> the lock of the one fetching it

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url})"

    def check(self) -> None:
        """Fail the start now, in one line, if the bucket cannot be reached with these
        credentials (rather than at the first upload)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", "?"))
            why = {"403": "access denied (check the AWS credentials)", "404": "no such bucket"}.get(code, code)
            raise SystemExit(f"devpi: --blob-storage: cannot use the S3 bucket {self.bucket!r}: {why}") from None
        except BotoCoreError as e:
            raise SystemExit(f"devpi: --blob-storage: cannot reach the S3 store: {type(e).__name__}") from None

    # -- names ---------------------------------------------------------------------------------
    def key(self, sha256: str) -> str:
        if not SHA256.fullmatch(sha256):
            raise ValueError("not a sha256")
        return f"{self.prefix}/{sha256}" if self.prefix else sha256

    def _sha_of_key(self, key: str) -> str | None:
        name = key[len(self.prefix) + 1:] if self.prefix else key
        return name if SHA256.fullmatch(name) else None

    def _head(self, sha256: str) -> dict | None:
        from botocore.exceptions import ClientError

        with _remote("HEAD"):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def size(self, sha256: str) -> int | None:
        head = self._head(sha256)
        return None if head is None else head["ContentLength"]

    # -- writing -------------------------------------------------------------------------------
    def _install(self, tmp: Path, digest: str, durable: bool = True) -> None:
        """PUT the spooled bytes and confirm them with a HEAD before the caller's row
        commits. A blob already there is PUT again all the same: that renews its
        LastModified, which the garbage collector reads as its age (see
        ``remove_unless_fresh``)."""
        from boto3.s3.transfer import TransferConfig

        size = tmp.stat().st_size
        try:
            with _remote("PUT"):
                self.client.upload_file(str(tmp), self.bucket, self.key(digest),
                                        Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                                              max_concurrency=4))
        except BlobStoreUnavailable:
            tmp.unlink(missing_ok=True)
            raise
        head = self._head(digest)
        if head is None or head["ContentLength"] != size:
            tmp.unlink(missing_ok=True)
            raise BlobStoreUnavailable(f"the S3 store did not keep blob {digest}")
        self._keep_copy(tmp, digest)

    def sync_dir(self, sha256: str) -> None:
        """Nothing to do: ``_install`` returns once the object is stored."""

    def make_dirs(self) -> None:
        """No directories in a bucket."""

    # -- local copies --------------------------------------------------------------------------
    def _keep_copy(self, tmp: Path, digest: str) -> None:
        try:
            os.replace(tmp, self.cache_dir / digest)
        except OSError:
            tmp.unlink(missing_ok=True)
            return
        self._trim_cache()

    def _trim_cache(self) -> None:
        with self._cache_lock:
            entries = []
            for e in os.scandir(self.cache_dir):
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                entries.append((st.st_atime, st.st_mtime, st.st_size, e.path))
            entries.sort()
            total = sum(e[2] for e in entries)
            now = time.time()
            while entries and (len(entries) > CACHE_FILES or total > CACHE_BYTES):
                _, mtime, size, path = entries.pop(0)
                if now - mtime < CACHE_KEEP_RECENT:
                    continue
                Path(path).unlink(missing_ok=True)
                total -= size

    def path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (hashed when it was fetched), for readers that
        need a file (zip, pkginfo, a mirror download's waiting clients). A blob missing
        from the bucket gives a path that does not exist: opening it fails as for the
        local store."""
        local = self.cache_dir / self.key(sha256).rpartition("/")[2]
        try:
            os.utime(local)
            return local
        except FileNotFoundError:
            pass
        import tempfile

        fd, name = tempfile.mkstemp(dir=self.tmpdir, prefix="fetch-")
        try:
            with os.fdopen(fd, "wb") as out:
                for data in self.iter_verified(sha256):
                    out.write(data)
            os.replace(name, local)
        except (FileNotFoundError, BlobCorrupt):
            return local
        finally:
            Path(name).unlink(missing_ok=True)
        self._trim_cache()
        return local

    def filename(self, sha256: str) -> str:
        return str(self.path(sha256))

    # -- reading -------------------------------------------------------------------------------
    def _body(self, sha256: str) -> Any:
        from botocore.exceptions import ClientError

        with _remote("GET"):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(sha256) from None
                raise

    def read_bytes(self, sha256: str) -> bytes:
        body = self._body(sha256)
        try:
            data = body.read()
        finally:
            body.close()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupt(sha256)
        return data

    def iter_verified(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """As the local store's: the whole object is hashed, the last piece held back until
        the hash matched (a range still reads the whole object)."""
        h = hashlib.sha256()
        pending: bytes | None = None
        pos = 0
        body = self._body(sha256)
        try:
            for data in body.iter_chunks(CHUNK):
                h.update(data)
                lo, hi = max(start - pos, 0), len(data) if end is None else min(end - pos, len(data))
                pos += len(data)
                if hi <= lo:
                    continue
                if pending is not None:
                    yield pending
                pending = data[lo:hi]
        finally:
            body.close()
        if h.hexdigest() != sha256:
            raise BlobCorrupt(sha256)
        if pending is not None:
            yield pending

    def open_blob(self, sha256: str) -> tuple[BinaryIO, bool]:
        """The local copy, opened and hashed (see the module's docstring), so the download
        is sent as a plain file. Not 'verified' (the caller then streams the object through
        ``iter_verified``) for a blob too big for the cache or when downloads are redirected
        to the store. FileNotFoundError when the object is missing; BlobCorrupt when the
        bucket's object does not match its name."""
        if self.redirect_seconds:  # the client fetches from the store itself
            if not self.exists(sha256):
                raise FileNotFoundError(sha256)
            return io.BytesIO(b""), False
        for _ in range(2):
            local = self._local_copy(sha256)
            if local is None:  # too big to keep: streamed
                return io.BytesIO(b""), False
            try:
                f = open(local, "rb", buffering=0)
            except FileNotFoundError:  # trimmed in between
                continue
            try:
                stamp = _stamp(os.fstat(f.fileno()))
                if self._still_verified(sha256, stamp) or self._hashes_to(f, sha256):
                    self._remember_verified(sha256, stamp)
                    f.seek(0)
                    return f, True
            except BaseException:
                f.close()
                raise
            f.close()
            log.warning("the local copy of blob %s no longer matches its hash: fetching it again", sha256)
            with contextlib.suppress(FileNotFoundError):
                local.unlink()
        raise BlobCorrupt(sha256)

    @staticmethod
    def _hashes_to(f: BinaryIO, sha256: str) -> bool:
        h = hashlib.sha256()
        while data := f.read(CHUNK):
            h.update(data)
        return h.hexdigest() == sha256

    def _local_copy(self, sha256: str) -> Path | None:
        """The cached copy's path, fetched (hash-checked as it is written) if there is none;
        None for a blob bigger than an eighth of the cache. Concurrent requests of one
        process for one blob share the fetch."""
        local = self.cache_dir / self.key(sha256).rpartition("/")[2]
        try:
            os.utime(local)  # recently used: trimmed last
            return local
        except FileNotFoundError:
            pass
        with self._fetch_lock(sha256):
            if local.exists():
                return local
            head = self._head(sha256)
            if head is None:
                raise FileNotFoundError(sha256)
            if head["ContentLength"] > CACHE_BYTES // 8:
                return None
            import tempfile

            fd, name = tempfile.mkstemp(dir=self.tmpdir, prefix="fetch-")
            try:
                with os.fdopen(fd, "wb") as out:
                    for data in self.iter_verified(sha256):  # BlobCorrupt before the copy exists
                        out.write(data)
                os.replace(name, local)
            finally:
                Path(name).unlink(missing_ok=True)
            self._trim_cache()
            return local

    def _fetch_lock(self, sha256: str) -> threading.Lock:
        with self._cache_lock:
            lock = self._fetches.get(sha256)
            if lock is None:
                if len(self._fetches) > 1024:  # bounded: drop the ones nobody holds
                    self._fetches = {k: v for k, v in self._fetches.items() if v.locked()}
                lock = self._fetches[sha256] = threading.Lock()
            return lock

    def redirect_url(self, sha256: str, filename: str) -> str | None:
        """A presigned GET URL when ``--blob-redirect`` is on, else None."""
        if not self.redirect_seconds:
            return None
        # No response-content-disposition: SeaweedFS rejects the signature of a URL carrying
        # one, and pip and uv name the download after the link they followed.
        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=self.redirect_seconds, Params={"Bucket": self.bucket, "Key": self.key(sha256)})

    # -- what fsck and the garbage collector see -----------------------------------------------
    def scan(self) -> Iterator[BlobEntry]:
        """Every object under the prefix, LastModified as its age; a key that is not a sha256
        directly under the prefix is ``odd`` (never served, never deleted)."""
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            with _remote("LIST"):
                page = next(pages, None)
            if page is None:
                return
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                sha = self._sha_of_key(key)
                yield BlobEntry(sha, f"{SCHEME}{self.bucket}/{key}", obj["Size"],
                                obj["LastModified"].timestamp(), sha is None)

    def matches(self, entry: BlobEntry) -> bool:
        """fsck: stream the object and compare its hash with its name."""
        h = hashlib.sha256()
        body = self._body(entry.sha256 or "")
        try:
            for data in body.iter_chunks(CHUNK):
                h.update(data)
        finally:
            body.close()
        return h.hexdigest() == entry.sha256

    def remove_unless_fresh(self, sha256: str, min_age: float, now: float | None = None) -> bool:
        """Delete the object unless it was (re)written less than ``min_age`` seconds ago.
        A writer PUTting the same bytes between the HEAD and the DELETE loses its object;
        the grace period (hours) is what keeps that from meeting a row: the row is
        committed moments after the PUT, and the collector deletes only what no row named
        for the whole grace period."""
        now = time.time() if now is None else now
        head = self._head(sha256)
        if head is None:
            return False
        if now - head["LastModified"].timestamp() < min_age:
            return False
        with _remote("DELETE"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        (self.cache_dir / sha256).unlink(missing_ok=True)
        return True

    def quarantine(self, sha256: str, dest_dir: Path) -> Path | None:
        """Copy the object (as it is, unchecked) to ``dest_dir`` and delete it from the bucket."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{sha256}.{int(time.time())}"
        try:
            body = self._body(sha256)
        except FileNotFoundError:
            return None
        with body, open(dest, "wb") as out:
            for data in body.iter_chunks(CHUNK):
                out.write(data)
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        (self.cache_dir / sha256).unlink(missing_ok=True)
        return dest


def open_store(url: str, serverdir: Path) -> S3BlobStore:
    """The store for an ``s3://`` URL, its bucket checked; SystemExit in one line if not."""
    try:
        store = S3BlobStore(url, serverdir / "s3-spool")
    except S3UrlError as e:
        raise SystemExit(f"devpi: --blob-storage: {e}") from None
    except ImportError:
        raise SystemExit("devpi: --blob-storage s3:// needs boto3: pip install 'devpi[s3]'") from None
    store.check()
    return store
