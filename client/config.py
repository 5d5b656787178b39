"""Client state on disk: which server/index is in use and the login tokens.

Two files live in the client dir:

* ``current.json`` -- index, simpleindex, pypisubmit, login, features,
  username, venvdir, always_setcfg (same keys as devpi-client's).
* ``auth.json`` -- ``{"auth": {root_url: [user, token]}, "basic_auth": {...}, "client_cert": {root_url: pem}}``,
  written with 0600 permissions because the token is a credential.

The directory defaults to the platform's user config dir so that it sits
next to pip's and uv's configuration; ``DEVPI_CLIENTDIR`` or ``--clientdir``
override it (tests and several parallel identities need that).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from devpi.client.errors import DevpiError


def default_clientdir() -> Path:
    """Return the per-user config dir for devpi (without creating it)."""
    env = os.environ.get("DEVPI_CLIENTDIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "devpi" / "client"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "devpi" / "client"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "devpi" / "client"


def _write_private(path: Path, data: Any) -> None:
    """Write JSON atomically with 0600 permissions (never world readable, not even briefly).

    A client dir that cannot be created or written (``--clientdir`` naming a
    file, a read-only disk) ends the command with one line naming the path.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (FileExistsError, NotADirectoryError):
        raise DevpiError(f"client dir {path.parent} is not usable: it or one of its parents "
                         "is a file, not a directory (see --clientdir / $DEVPI_CLIENTDIR)") from None
    except OSError as e:
        raise DevpiError(f"cannot create client dir {path.parent}: {e.strerror or e}") from None
    try:
        _write_json_file(path, data)
    except OSError as e:
        raise DevpiError(f"cannot write {path}: {e.strerror or e}") from None


def _write_json_file(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=str(path.parent))
    try:
        os.chmod(tmp, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # a corrupt state file must not brick the CLI: start afresh
        return {}
    return data if isinstance(data, dict) else {}


def local_current_path() -> Path | None:
    """``$VIRTUAL_ENV/devpi.json`` when it exists (made by ``devpi use --local``): devpi-client's
    per-virtualenv state, used instead of the client dir's current.json while that venv is active."""
    venv = os.environ.get("VIRTUAL_ENV")
    if not venv:
        return None
    path = Path(venv) / "devpi.json"
    return path if path.is_file() else None


class ClientState:
    """current.json plus auth.json of one client dir."""

    def __init__(self, clientdir: Path) -> None:
        self.clientdir = Path(clientdir)
        self.current_path = local_current_path() or self.clientdir / "current.json"
        self.auth_path = self.clientdir / "auth.json"
        self.current: dict[str, Any] = _read_json(self.current_path)
        self.auth: dict[str, Any] = _read_json(self.auth_path)

    # -- current.json --------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        return self.current.get(key, default)

    def update(self, **kw: Any) -> None:
        """Set (value not None) or drop (value None) keys and save."""
        for key, value in kw.items():
            if value is None:
                self.current.pop(key, None)
            else:
                self.current[key] = value
        self.save_current()

    def save_current(self) -> None:
        _write_private(self.current_path, self.current)

    @property
    def root_url(self) -> str | None:
        """Server root, derived from the login URL the way devpi-client does."""
        login = self.current.get("login")
        if not login:
            return None
        return login.rsplit("/", 1)[0]

    @property
    def index(self) -> str | None:
        return self.current.get("index")

    @property
    def features(self) -> list[str]:
        return list(self.current.get("features") or [])

    # -- auth.json -----------------------------------------------------
    def get_login(self, root: str | None) -> tuple[str, str] | None:
        """(user, token) stored for this server root, if any."""
        if not root:
            return None
        entry = (self.auth.get("auth") or {}).get(root.rstrip("/"))
        if isinstance(entry, list) and len(entry) == 2:
            return str(entry[0]), str(entry[1])
        return None

    def set_login(self, root: str, user: str, token: str) -> None:
        self.auth.setdefault("auth", {})[root.rstrip("/")] = [user, token]
        _write_private(self.auth_path, self.auth)

    def del_login(self, root: str) -> bool:
        removed = (self.auth.get("auth") or {}).pop(root.rstrip("/"), None)
        _write_private(self.auth_path, self.auth)
        return removed is not None

    def get_basic_auth(self, root: str | None) -> tuple[str, str] | None:
        if not root:
            return None
        entry = (self.auth.get("basic_auth") or {}).get(root.rstrip("/"))
        if isinstance(entry, list) and len(entry) == 2:
            return str(entry[0]), str(entry[1])
        return None

    def get_client_cert(self, root: str | None) -> str | None:
        """The TLS client certificate (PEM path) stored for this server root by ``devpi use --client-cert``."""
        value = (self.auth.get("client_cert") or {}).get((root or "").rstrip("/"))
        return value if isinstance(value, str) and value else None

    def set_client_cert(self, root: str, path: str | None) -> bool:
        """Store (or with None drop) the certificate of ``root``; whether there was one before."""
        certs = self.auth.setdefault("client_cert", {})
        before = certs.pop(root.rstrip("/"), None)
        if path:
            certs[root.rstrip("/")] = path
        _write_private(self.auth_path, self.auth)
        return before is not None

    def set_basic_auth(self, root: str, user: str, password: str) -> None:
        self.auth.setdefault("basic_auth", {})[root.rstrip("/")] = [user, password]
        _write_private(self.auth_path, self.auth)
