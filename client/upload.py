"""``devpi upload``: build a checkout (or take existing files) and upload them.

Release files go up with the legacy ``:action=file_upload`` form (what
twine speaks), docs as ``:action=doc_upload`` zips.  Building uses
``python -m build`` in a subprocess so a broken build backend can never take
the CLI down, and its output stays out of the way unless ``-v``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from devpi.client.cli import add_command, add_index_option
from devpi.client.hub import Hub
from devpi.client.progress import Progress
from devpi.client.spec import normalize
from devpi.client.upload_config import BuildChoice, build_choice, read_checkout_config

DESCRIPTION = """\
Build and upload a project, or upload existing distribution files.

  devpi upload                         build sdist+wheel of the checkout in '.' and upload them
  devpi upload --no-isolation          build without an isolated build env
  devpi upload dist/*                  upload existing files (or every archive in a directory)
  devpi upload --with-docs             also upload docs (doc/docs/source with conf.py, or a built tree)
  devpi upload --with-docs docs/_build/html
  devpi upload --only-docs docs/_build/html
  devpi upload --dry-run               build and show what would be uploaded
  devpi upload -p python3.12 --sdist   build with another interpreter, only the sdist

Defaults for --sdist/--wheel can be set in pyproject.toml [tool.devpi.upload]
(or setup.cfg [devpi:upload]), as with devpi-client.
"""

ARCHIVE_RE = re.compile(r".+\.(whl|tar\.gz|tgz|tar\.bz2|tar|zip|egg)$")
DOC_RE = re.compile(r"^(?P<name>.+?)(?:-(?P<version>[^-]+?))?\.docs?\.(?P<ext>zip|tar\.gz|tgz)$")
# bdist_dumb's NAME-VERSION.PLATFORM.tar.gz|zip: no metadata inside, name and version from the name
BDIST_DUMB_RE = re.compile(r"^(?P<name>.+?)-(?P<version>\d[^-]*?)\.(?P<platform>(?:linux|win|macosx|darwin|cygwin|"
                           r"freebsd|netbsd|openbsd|solaris|aix)[A-Za-z0-9_.-]*)\.(?:tar\.gz|tgz|zip)$")
FIELD_RENAMES = {"platforms": "platform", "supported_platforms": "supported_platform"}
AUTO = "\0auto"
RECURSIVE = "\0recursive"  # --from-dir without a directory
DOC_TREES = ("docs/_build/html", "doc/_build/html", "docs/build/html", "doc/build/html", "build/sphinx/html")


def register(subparsers: Any) -> None:
    p = add_command(subparsers, "upload", run, help="build and upload a project, or upload files",
                    description=DESCRIPTION)
    p.add_argument("paths", nargs="*", metavar="FILE_OR_DIR",
                   help="distribution files or directories holding them (default: build the checkout in '.')")
    add_index_option(p)
    p.add_argument("--from-dir", metavar="DIR", action="append", default=[], nargs="?", const=RECURSIVE,
                   help="upload every archive found in DIR and its subdirectories; without DIR "
                        "(devpi-client's form) the directories given as paths are searched that way")
    p.add_argument("--sdist", action="store_true", help="build only the sdist")
    p.add_argument("--wheel", action="store_true", help="build only the wheel")
    p.add_argument("--formats", metavar="FORMATS", default=None,
                   help="deprecated (devpi-client): comma separated sdist/sdist.tgz/bdist_wheel, "
                        "mapped to --sdist/--wheel")
    p.add_argument("-p", "--python", metavar="PYTHON_EXE", default=None,
                   help="build with this interpreter ('PYTHON_EXE -m build'; default: the one devpi runs on)")
    p.add_argument("--no-isolation", action="store_true",
                   help="build in the current environment (passed to 'python -m build')")
    p.add_argument("--no-vcs", action="store_true",
                   help="accepted for compatibility with devpi-client; the checkout is always built as is "
                        "(no export of the VCS-tracked files)")
    p.add_argument("--setupdir-only", action="store_true",
                   help="accepted for compatibility with devpi-client (like --no-vcs: nothing is exported)")
    p.add_argument("--with-docs", nargs="?", const=AUTO, default=None, metavar="DIR",
                   help="also upload documentation: DIR is a built HTML tree or a Sphinx source dir "
                        "(default: doc/, docs/ or source/ with conf.py, or a built docs/_build/html)")
    p.add_argument("--only-docs", nargs="?", const=AUTO, default=None, metavar="DIR",
                   help="upload only the documentation (see --with-docs)")
    p.add_argument("--only-latest", action="store_true",
                   help="of the given files upload only the newest version of each project")
    p.add_argument("--dry-run", action="store_true", help="build and show, but upload nothing")


class Dist:
    """One file to upload with its metadata."""

    def __init__(self, path: Path, name: str, version: str, fields: list[tuple[str, str]], is_doc: bool) -> None:
        self.path = path
        self.name = name
        self.version = version
        self.fields = fields
        self.is_doc = is_doc


def run(hub: Hub, args: argparse.Namespace) -> int:
    docs_arg = args.only_docs or args.with_docs
    recursive = bool(args.from_dir)
    paths = list(args.paths) + [d for d in args.from_dir if d != RECURSIVE]
    # "--with-docs FILE" where FILE is a release file: argparse gave it to the option
    if docs_arg and docs_arg != AUTO and _looks_like_dists(Path(docs_arg)):
        paths.append(docs_arg)
        docs_arg = AUTO
    if args.only_docs and args.with_docs:
        hub.fatal("use either --with-docs or --only-docs")
    info = hub.index_api(args.index)
    pypisubmit = info.get("pypisubmit")
    if not pypisubmit:
        hub.fatal(f"the index {hub.index_name(info['index'])} does not support upload (most likely it is a mirror)")
    if not args.dry_run:
        check_may_upload(hub, info["index"])
    if docs_arg and docs_arg != AUTO and not Path(docs_arg).is_dir():
        hub.fatal(f"documentation directory {docs_arg} does not exist")
    if docs_arg == AUTO and not find_docs_source(Path.cwd()):
        hub.fatal(f"no documentation found in {Path.cwd()}: pass --with-docs DIR "
                  "(a built HTML tree or a Sphinx source directory)")
    with tempfile.TemporaryDirectory(prefix="devpi-upload-") as tmp:
        tmpdir = Path(tmp)
        dists: list[Dist] = []
        if paths:
            files = collect_files(hub, paths, recursive)
            dists = [read_dist(hub, f) for f in files]
            if args.only_latest:
                dists = only_latest(dists)
        elif not args.only_docs:
            checkout = find_checkout(hub, Path.cwd())
            choice = build_choice(hub, args, read_checkout_config(hub, checkout))
            built = build_dists(hub, checkout, tmpdir / "dist", args, choice)
            dists = [read_dist(hub, f) for f in built]
        if docs_arg:
            # named after the release files given/built, even with --only-docs
            dists.append(make_doc_dist(hub, docs_arg, dists, tmpdir, args))
        if args.only_docs:
            dists = [d for d in dists if d.is_doc]
        if not dists:
            hub.fatal("nothing to upload: no distribution files found")
        releases = sorted((d for d in dists if not d.is_doc), key=lambda d: str(d.path))
        docs = [d for d in dists if d.is_doc]
        uploaded: list[Dist] = []
        for dist in releases + docs:
            if args.dry_run:
                hub.info(f"skipped upload (dry run): {dist.path.name} ({dist.name} {dist.version})")
                continue
            upload_file(hub, pypisubmit, dist)
            uploaded.append(dist)
        if uploaded:
            show_urls(hub, info["index"], uploaded)
    return 0


def check_may_upload(hub: Hub, index: str) -> None:
    """Before building (seconds to minutes): is the server there, is the login still valid, and
    does the index's ``acl_upload`` let this user upload? Two small GETs. Refuses only what is
    certain: with groups in the ACL (the client cannot see memberships) or a scoped token the
    server has the last word at upload time."""
    iname = hub.index_name(index)
    api = hub.request("GET", index + "/+api", error_prefix=f"index {iname}")
    status = (api.result or {}).get("authstatus") if isinstance(api.result, dict) else None
    user = status[1] if isinstance(status, list) and len(status) > 1 and status[0] == "ok" else None
    if hub.login and user is None:
        hub.fatal(f"your login as {hub.login[0]} is not valid any more (expired or revoked?): run 'devpi login "
                  f"{hub.login[0]}' again")
    reply = hub.request("GET", index, params={"no_projects": ""}, check=False)
    if reply.status_code in (401, 403):
        hub.fatal(f"no permission to read index {iname}" + ("" if user else ": run 'devpi login USER'"))
    cfg = reply.result if reply.status_code == 200 and isinstance(reply.result, dict) else None
    if cfg is None:
        return  # the upload itself will say what is wrong
    acl = [str(a) for a in cfg.get("acl_upload") or []]
    if ":ANONYMOUS:" in acl:
        return
    shown = ", ".join(acl) or "nobody"
    if user is None:
        hub.fatal(f"not logged in: uploading to {iname} needs a login (acl_upload: {shown}); "
                  "run 'devpi login USER'")
    if ":AUTHENTICATED:" in acl or user in acl or any(a.startswith(":") for a in acl):
        return
    hub.fatal(f"user {user} may not upload to {iname} (acl_upload: {shown})")


# -- collecting files ------------------------------------------------------------------

def _looks_like_dists(path: Path) -> bool:
    """A release file, or a directory of them without any HTML (i.e. not a docs tree)."""
    if path.is_file():
        return True
    if not path.is_dir():
        return False
    names = [p.name for p in path.iterdir()]
    return any(ARCHIVE_RE.match(n) for n in names) and not any(n.endswith(".html") for n in names)


def collect_files(hub: Hub, paths: list[str], recursive: bool = False) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in (path.rglob("*") if recursive else path.iterdir())
                           if p.is_file() and _is_archive(p.name))
            if not found:
                hub.warn(f"no distribution files in directory {path}")
            files.extend(found)
        elif path.is_file():
            if not _is_archive(path.name):
                hub.fatal(f"{path} is not a distribution file (.whl, .tar.gz, .zip, ...)")
            files.append(path)
        else:
            hub.fatal(f"{path}: no such file or directory")
    seen: set[Path] = set()
    unique = []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def _is_archive(name: str) -> bool:
    return bool(ARCHIVE_RE.match(name)) or bool(DOC_RE.match(name))


def read_dist(hub: Hub, path: Path) -> Dist:
    """Metadata of a release file (pkginfo), or name/version of a doc archive from its name."""
    m = DOC_RE.match(path.name)
    if m and not path.name.endswith(".whl"):
        return Dist(path, m.group("name"), m.group("version") or "", [], is_doc=True)
    dumb = BDIST_DUMB_RE.match(path.name)
    if dumb:
        name, version = dumb.group("name"), dumb.group("version")
        return Dist(path, name, version, [("name", name), ("version", version), ("filetype", "bdist_dumb"),
                                          ("pyversion", "")], is_doc=False)
    import warnings

    import pkginfo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            meta = pkginfo.get_metadata(str(path))
        except Exception as e:
            hub.fatal(f"{path}: cannot read package metadata: {e}")
    if meta is None or not getattr(meta, "name", None) or not getattr(meta, "version", None):
        hub.fatal(f"{path}: cannot read package metadata (not a valid sdist or wheel?)")
    fields: list[tuple[str, str]] = []
    for key in meta:
        value = getattr(meta, key, None)
        field = FIELD_RENAMES.get(key, key)
        if value is None:
            continue
        if isinstance(value, list | tuple):
            fields.extend((field, str(v)) for v in value if v is not None)
        elif str(value) != "":
            fields.append((field, str(value)))
    filetype, pyversion = _filetype(path.name)
    fields += [("filetype", filetype), ("pyversion", pyversion)]
    return Dist(path, str(meta.name), str(meta.version), fields, is_doc=False)


def _filetype(filename: str) -> tuple[str, str]:
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return "bdist_wheel", parts[-3] if len(parts) >= 5 else "py3"
    if filename.endswith(".egg"):
        m = re.search(r"-py(\d+(?:\.\d+)?)", filename)
        return "bdist_egg", m.group(1) if m else ""
    return "sdist", "source"


def only_latest(dists: list[Dist]) -> list[Dist]:
    from packaging.version import InvalidVersion, Version

    def key(d: Dist) -> Any:
        try:
            return (1, Version(d.version))
        except InvalidVersion:
            return (0, d.version)

    latest: dict[str, Any] = {}
    for d in dists:
        n = normalize(d.name)
        if n not in latest or key(d) > latest[n]:
            latest[n] = key(d)
    return [d for d in dists if key(d) == latest[normalize(d.name)]]


# -- building ------------------------------------------------------------------------------

def find_checkout(hub: Hub, start: Path) -> Path:
    if (start / "pyproject.toml").exists() or (start / "setup.py").exists():
        return start
    hub.fatal(f"{start} has no pyproject.toml or setup.py: run inside a project checkout, "
              "or give the files to upload")


def build_python(hub: Hub, given: str | None) -> str:
    """The interpreter that builds (``-p``), checked to exist and to have ``build``."""
    import importlib.util

    if given is None:
        if importlib.util.find_spec("build") is None:
            hub.fatal(f"the 'build' package is not installed for {sys.executable}: pip install build")
        return sys.executable
    exe = shutil.which(given) or (given if Path(given).is_file() else None)
    if exe is None:
        hub.fatal(f"--python {given}: no such interpreter")
    try:
        ok = subprocess.run([exe, "-c", "import build"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError) as e:
        hub.fatal(f"--python {given}: cannot run it: {e}")
    if not ok:
        hub.fatal(f"the 'build' package is not installed for {exe}: {exe} -m pip install build")
    return str(Path(exe).absolute())


def build_dists(hub: Hub, checkout: Path, outdir: Path, args: argparse.Namespace,
                choice: BuildChoice | None = None) -> list[Path]:
    """Run ``python -m build`` (sdist + wheel unless restricted) into ``outdir``."""
    choice = choice or BuildChoice(sdist=args.sdist, wheel=args.wheel)
    python = build_python(hub, getattr(args, "python", None))
    cmd = [python, "-m", "build", "--outdir", str(outdir)]
    what = choice.what
    if what == "sdist":
        cmd.append("--sdist")
    elif what == "wheel":
        cmd.append("--wheel")
    if args.no_isolation:
        cmd.append("--no-isolation")
    cmd.append(str(checkout))
    mode = "without isolation" if args.no_isolation else "isolated"
    hub.info(f"building {what} of {checkout} ({mode}{', ' + python if getattr(args, 'python', None) else ''}) ...")
    _run_tool(hub, cmd, "build")
    built = sorted(p for p in outdir.iterdir() if ARCHIVE_RE.match(p.name)) if outdir.is_dir() else []
    if not built:
        hub.fatal("the build produced no distribution files")
    for p in built:
        hub.info(f"built {p.name}")
    return built


def _run_tool(hub: Hub, cmd: list[str], what: str) -> None:
    """Run a build tool; its output is shown live with -v, else only when it fails."""
    hub.debugmsg("running " + " ".join(cmd))
    try:
        if hub.verbose:
            rc = subprocess.call(cmd)
            output = ""
        else:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace")
            rc, output = proc.returncode, proc.stdout
    except OSError as e:
        hub.fatal(f"cannot run {cmd[0]}: {e}")
    if rc != 0:
        tail = "\n".join(output.splitlines()[-40:])
        if tail:
            print(tail, file=sys.stderr)
        hub.fatal(f"{what} failed with exit code {rc} (output above; -v shows all of it)")


# -- docs ------------------------------------------------------------------------------------

def make_doc_dist(hub: Hub, docs_arg: str, dists: list[Dist], tmpdir: Path, args: argparse.Namespace) -> Dist:
    """Zip a documentation tree (building it with Sphinx first when given sources)."""
    htmldir = find_docs(hub, Path.cwd(), None if docs_arg == AUTO else Path(docs_arg), tmpdir)
    name, version = docs_name_version(hub, dists, args)
    zpath = tmpdir / f"{name}-{version}.doc.zip"
    count = 0
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(htmldir.rglob("*")):
            rel = path.relative_to(htmldir)
            if path.is_dir() or rel.parts[0] in (".doctrees", ".buildinfo"):
                continue
            zf.write(path, rel.as_posix())
            count += 1
    if not count:
        hub.fatal(f"documentation directory {htmldir} is empty")
    hub.info(f"packed {count} documentation files from {htmldir} into {zpath.name}")
    return Dist(zpath, name, version, [], is_doc=True)


def find_docs_source(checkout: Path) -> bool:
    """Whether ``find_docs`` will find something in ``checkout`` (checked before building)."""
    return any((src / "conf.py").exists() for cand in ("doc", "docs", "source")
               for src in (checkout / cand, checkout / cand / "source")) or any(
        (checkout / cand / "index.html").exists() for cand in DOC_TREES)


def find_docs(hub: Hub, checkout: Path, given: Path | None, tmpdir: Path) -> Path:
    if given is not None:
        if not given.is_dir():
            hub.fatal(f"documentation directory {given} does not exist")
        for src in (given, given / "source"):
            if (src / "conf.py").exists():
                return sphinx_build(hub, src, tmpdir / "html")
        return given
    for cand in ("doc", "docs", "source"):
        for src in (checkout / cand, checkout / cand / "source"):
            if (src / "conf.py").exists():
                return sphinx_build(hub, src, tmpdir / "html")
    for cand in DOC_TREES:
        if (checkout / cand / "index.html").exists():
            return checkout / cand
    hub.fatal(f"no documentation found in {checkout}: pass --with-docs DIR "
              "(a built HTML tree or a Sphinx source directory)")


def sphinx_build(hub: Hub, srcdir: Path, outdir: Path) -> Path:
    exe = shutil.which("sphinx-build")
    if exe is None:
        hub.fatal(f"{srcdir} is a Sphinx source directory but sphinx-build is not installed "
                  "(install sphinx, or pass an already built HTML directory)")
    hub.info(f"building documentation from {srcdir} with sphinx-build ...")
    _run_tool(hub, [exe, "-E", "-b", "html", str(srcdir), str(outdir)], "sphinx-build")
    return outdir


def docs_name_version(hub: Hub, dists: list[Dist], args: argparse.Namespace) -> tuple[str, str]:
    """Project name and version the docs belong to: from the release files, else the checkout."""
    pairs = {(normalize(d.name), d.version) for d in dists if not d.is_doc}
    if len(pairs) == 1:
        return pairs.pop()
    if len(pairs) > 1:
        hub.fatal("cannot tell which release the documentation belongs to: "
                  "upload the docs together with the files of one version only")
    checkout = find_checkout(hub, Path.cwd())
    try:
        from build.util import project_wheel_metadata

        meta = project_wheel_metadata(str(checkout), isolated=not args.no_isolation)
    except Exception as e:
        hub.fatal(f"cannot read the name and version of {checkout}: {' '.join(str(e).split())}")
    return normalize(meta["Name"]), str(meta["Version"])


# -- HTTP upload -------------------------------------------------------------------------------

class MultipartBody:
    """A multipart/form-data body that streams the file and reports progress.

    ``requests`` sends any object with ``read`` and ``__len__`` as a streamed
    body with a Content-Length, so big files are not loaded into memory.
    """

    def __init__(self, fields: list[tuple[str, str]], filename: str, path: Path, progress: Any = None) -> None:
        self.boundary = "devpi" + secrets.token_hex(16)
        b = self.boundary.encode()
        head = io.BytesIO()
        for key, value in fields:
            head.write(b"--" + b + b"\r\n")
            head.write(f'Content-Disposition: form-data; name="{_quote(key)}"\r\n\r\n'.encode())
            head.write(value.encode("utf-8") + b"\r\n")
        head.write(b"--" + b + b"\r\n")
        head.write(f'Content-Disposition: form-data; name="content"; filename="{_quote(filename)}"\r\n'.encode())
        head.write(b"Content-Type: application/octet-stream\r\n\r\n")
        self._head = head.getvalue()
        self._tail = b"\r\n--" + b + b"--\r\n"
        self._size = path.stat().st_size
        self._file = open(path, "rb")  # closed in close()
        self._pos = 0
        self._length = len(self._head) + self._size + len(self._tail)
        self.progress = progress  # called with (bytes sent, total) as requests reads

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._length
        out = b""
        while len(out) < n and self._pos < self._length:
            want = n - len(out)
            hl, fl = len(self._head), self._size
            if self._pos < hl:
                chunk = self._head[self._pos:self._pos + want]
            elif self._pos < hl + fl:
                chunk = self._file.read(min(want, hl + fl - self._pos))
                if not chunk:
                    raise OSError("file changed size while uploading")
            else:
                off = self._pos - hl - fl
                chunk = self._tail[off:off + want]
            self._pos += len(chunk)
            out += chunk
        if self.progress:
            self.progress(self._pos, self._length)
        return out

    def close(self) -> None:
        self._file.close()


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "\\\"").replace("\r", " ").replace("\n", " ")


def upload_file(hub: Hub, pypisubmit: str, dist: Dist) -> None:
    """POST one file; success is exactly HTTP 200 (the devpi/PyPI legacy rule)."""
    if dist.is_doc:
        zpath = dist.path
        if not zpath.name.endswith(".zip"):
            # the protocol wants a zip: repackage doc tarballs
            zpath = Path(tempfile.mkdtemp(prefix="devpi-doc-")) / f"{dist.name}-{dist.version}.doc.zip"
            zpath.write_bytes(tar_to_zip(hub, dist.path))
        fields = [("name", dist.name), ("version", dist.version), (":action", "doc_upload"),
                  ("protocol_version", "1")]
        path, filename = zpath, zpath.name
    else:
        sha256 = _sha256(dist.path)
        fields = [*dist.fields, (":action", "file_upload"), ("protocol_version", "1"),
                  ("sha256_digest", sha256)]
        path, filename = dist.path, dist.path.name
    body = MultipartBody(fields, filename, path)
    progress = Progress(f"uploading {filename}", len(body))
    body.progress = lambda done, total: progress.update_to(done)
    try:
        reply = hub.request("POST", pypisubmit, headers={"Content-Type": body.content_type,
                                                          "Accept": "*/*"},
                            data=body, check=False)
    finally:
        body.close()
        progress.close()
    if reply.status_code != 200:
        msg = reply.message or " ".join(reply.reason.split()) or "upload failed"
        hint = ""
        if reply.status_code in (401, 403) and not hub.login:
            hint = " (not logged in: run 'devpi login USER')"
        hub.fatal(f"{reply.status_code} FAIL {filename}: {msg}{hint}")
    hub.info(f"uploaded {filename} ({dist.name} {dist.version})" if not dist.is_doc
             else f"uploaded docs {filename} ({dist.name} {dist.version})")


def tar_to_zip(hub: Hub, path: Path) -> bytes:
    import tarfile

    buf = io.BytesIO()
    try:
        with tarfile.open(path) as tf, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for member in tf.getmembers():
                if member.isfile():
                    f = tf.extractfile(member)
                    if f is not None:
                        zf.writestr(member.name.lstrip("./"), f.read())
    except (tarfile.TarError, OSError) as e:
        hub.fatal(f"{path}: cannot read doc archive: {e}")
    return buf.getvalue()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def show_urls(hub: Hub, index: str, dists: list[Dist]) -> None:
    """Print where each uploaded file can be downloaded (asked from the server, not guessed)."""
    by_release: dict[tuple[str, str], list[Dist]] = {}
    for d in dists:
        by_release.setdefault((normalize(d.name), d.version), []).append(d)
    for (name, version), group in sorted(by_release.items()):
        hrefs: dict[str, str] = {}
        doc_href = None
        try:
            reply = hub.request("GET", f"{index}/{name}/{version}", check=False, timeout=(10, 60))
        except Exception:
            reply = None
        result = reply.result if reply is not None and isinstance(reply.result, dict) else {}
        for link in result.get("+links") or []:
            href = link.get("href") or ""
            if link.get("rel") == "doczip":
                doc_href = href
            hrefs[href.rsplit("/", 1)[-1].split("#")[0]] = href
        for d in group:
            if d.is_doc:
                url = doc_href or f"{index}/{name}/{version}"
            else:
                url = hrefs.get(d.path.name) or f"{index}/{name}/{version}"
            hub.info(url)
