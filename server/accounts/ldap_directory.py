"""Users and groups from an LDAP directory (``devpi server --ldap-config FILE``).

An internal plugin (server/plugins.py registers this module): with the option it registers
a ``DirectoryAuth`` that implements the auth hooks (server/hooks.py), so without it nothing
changes and no hook is called per request.

Who decides a login (doc/security.md, "LDAP"):

- ``root`` is always local: the directory is never asked about it, so root can administer
  the server while the directory is down, and no directory entry named root becomes root.
- any other name is asked of the directory first. Found and the bind succeeds: logged in,
  with the directory's groups (usable in every ACL as ``:group``). Found and the bind
  fails: refused (a local row of that name is never a second way in). Not found (with
  ``user_search``): the local user row decides, as without LDAP. With ``user_template``
  the directory cannot say "not found": a failed bind refuses, unless
  ``reject_as_unknown: true`` lets local users decide.
- a directory user needs no local user row to log in, upload through ACLs and read; to own
  indexes it needs a row, created as any user (``devpi user -c``), whose local password
  is then never used while the directory knows the name.
- an empty password is refused before the directory is asked: an LDAP simple bind with a
  DN and no password is an *anonymous* bind, which servers accept.
- the directory does not answer (or answers with an error): ``AuthUnavailable``, a 503 for
  the request. Fail closed: nothing falls back to local passwords, which could let a local
  row shadow a directory user. Tokens from ``/+login`` are still checked locally, but their
  groups come from the directory (cached), so they fail the same way once the cache is
  stale. Anonymous requests never get here.

Bounds: every connection has ``timeout`` to connect and to receive each answer; results
(verified passwords, group lists, "not in the directory") are kept ``cache_ttl`` seconds in
bounded per-process caches, so a removed membership or password takes effect within that
time. Untrusted input (the user name) reaches the directory only escaped: as a filter value
(RFC 4515) in searches, as an RDN value (RFC 4514) in ``user_template``.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..hooks import hookimpl
from .auth import AuthUnavailable
from .ldap_config import LdapConfig, Search, load

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("devpi.server.ldap")
CACHE_SIZE = 4096
MAX_GROUPS = 1000  # groups taken of one user; the search asks for no more
UNAVAILABLE = "the user directory (LDAP) is not answering; try again later"
# bind results that mean "these credentials do not log in" (not: the directory is broken)
# (invalidDNSyntax, inappropriateAuthentication, invalidCredentials, insufficientAccess, unwilling)
REFUSED = {34, 48, 49, 50, 53}


class ExpiringCache:
    """A bounded LRU whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(self, ttl: float, size: int = CACHE_SIZE):
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return False, None
            if hit[0] < time.monotonic():
                del self._entries[key]
                return False, None
            self._entries.move_to_end(key)
            return True, hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class Directory:
    """One LDAP directory: checks passwords and lists groups, one short connection each."""

    def __init__(self, config: LdapConfig):
        import ldap3

        self.config = config
        self.tls = None
        if config.uses_tls:
            import ssl

            self.tls = ldap3.Tls(validate=getattr(ssl, config.tls_validate), ca_certs_file=config.ca_certs_file)
        self._secret = os.urandom(32)
        self.verified = ExpiringCache(config.cache_ttl)  # (user, password digest) -> groups
        self.groups_of = ExpiringCache(config.cache_ttl)  # user -> groups, None: not in the directory

    # -- the hooks' answers -------------------------------------------------------------
    def check_password(self, user: str, password: str) -> list[str] | bool | None:
        """Groups (accepted), False (refused) or None (not a directory user: local decides)."""
        if not password:
            return False
        key = (user, hmac.digest(self._secret, password.encode("utf-8", "surrogatepass"), hashlib.sha256))
        hit, groups = self.verified.get(key)
        if hit:
            return list(groups)
        known, cached_groups = self.groups_of.get(user)
        if known and cached_groups is None:
            return None  # recently not found in the directory
        with self._session() as conn:
            userdn = self._userdn(conn, user)
            if userdn is None:
                self.groups_of.put(user, None)
                return None
            if not self._bind(conn, userdn, password):
                return None if self.config.reject_as_unknown else False
            groups = self._groups(conn, user, userdn, bound_as_user=True)
        self.verified.put(key, tuple(groups))
        self.groups_of.put(user, tuple(groups))
        return groups

    def groups(self, user: str) -> list[str]:
        """The groups of an authenticated user (a token's owner), from the cache or the directory."""
        hit, groups = self.groups_of.get(user)
        if hit:
            return list(groups or ())
        with self._session() as conn:
            userdn = self._userdn(conn, user)
            groups = [] if userdn is None else self._groups(conn, user, userdn, bound_as_user=False)
        self.groups_of.put(user, tuple(groups) if userdn is not None else None)
        return groups

    # -- LDAP ---------------------------------------------------------------------------
    def new_server(self) -> Any:
        """A fresh ``ldap3.Server`` per check: one remembers addresses that failed once as
        unavailable for minutes, which would stretch a short outage."""
        import ldap3

        return ldap3.Server(self.config.url, connect_timeout=self.config.timeout, tls=self.tls,
                            get_info=ldap3.NONE)

    def _session(self) -> _Session:
        return _Session(self)

    def _userdn(self, conn: Any, user: str) -> str | None:
        from ldap3.utils.conv import escape_filter_chars
        from ldap3.utils.dn import escape_rdn

        cfg = self.config
        if cfg.user_template is not None:
            return cfg.user_template.format(username=escape_rdn(user))
        search = cfg.user_search
        assert search is not None
        self._bind_reader(conn, search)
        entries = self._search(conn, search, search.filter.format(username=escape_filter_chars(user)),
                               limit=2)
        if not entries:
            return None
        if len(entries) > 1:
            log.warning("LDAP: user search for %r found several entries: refused", user)
            return None if cfg.reject_as_unknown else ""  # "" never binds: refused below
        dn, attrs = entries[0]
        if search.attribute_name:
            values = _values(attrs, search.attribute_name)
            return values[0] if values else None
        return dn

    def _groups(self, conn: Any, user: str, userdn: str, *, bound_as_user: bool) -> list[str]:
        from ldap3.utils.conv import escape_filter_chars

        search = self.config.group_search
        if search is None:
            return []
        if search.userdn is not None or not bound_as_user:
            self._bind_reader(conn, search)
        filt = search.filter.format(username=escape_filter_chars(user), userdn=escape_filter_chars(userdn))
        groups: list[str] = []
        for _, attrs in self._search(conn, search, filt, limit=MAX_GROUPS):
            for value in _values(attrs, search.attribute_name or "cn"):
                if value not in groups:
                    groups.append(value)
        return groups

    def _bind(self, conn: Any, dn: str, password: str) -> bool:
        """Whether ``dn`` binds with ``password``; AuthUnavailable when the directory fails."""
        if not dn or not password:
            return False
        from ldap3.core.exceptions import (
            LDAPException,
            LDAPInvalidDnError,
            LDAPPasswordIsMandatoryError,
            LDAPSASLPrepError,
        )

        try:
            if conn.rebind(user=dn, password=password, read_server_info=False):
                return True
        except (LDAPSASLPrepError, LDAPPasswordIsMandatoryError, LDAPInvalidDnError):
            return False  # credentials no directory could accept (a control character, say): never sent
        except LDAPException as e:
            if conn.result and conn.result.get("result") in REFUSED:
                return False
            raise _unavailable(e) from None
        if (conn.result or {}).get("result") in REFUSED:
            return False
        raise _unavailable(f"bind answered {conn.result}")

    def _bind_reader(self, conn: Any, search: Search) -> None:
        """Bind as the search account (or anonymously when none is configured)."""
        from ldap3.core.exceptions import LDAPException

        try:
            if search.userdn is not None:
                ok = conn.rebind(user=search.userdn, password=search.password, read_server_info=False)
            else:
                ok = conn.rebind(authentication="ANONYMOUS", read_server_info=False)
        except LDAPException as e:
            raise _unavailable(e) from None
        if not ok:
            log.error("LDAP: the search account %s cannot bind: %s", search.userdn or "(anonymous)", conn.result)
            raise AuthUnavailable(UNAVAILABLE)

    def _search(self, conn: Any, search: Search, filt: str, *, limit: int) -> list[tuple[str, dict]]:
        import ldap3
        from ldap3.core.exceptions import LDAPException

        attrs = [search.attribute_name] if search.attribute_name else [ldap3.NO_ATTRIBUTES]
        try:
            conn.search(search.base, filt, search_scope=getattr(ldap3, search.scope), attributes=attrs,
                        size_limit=limit, time_limit=max(1, int(self.config.timeout)))
        except LDAPException as e:
            raise _unavailable(e) from None
        code = (conn.result or {}).get("result")
        if code not in (0, 4, 32):  # success, sizeLimitExceeded (more than asked), noSuchObject (no base)
            raise _unavailable(f"search answered {conn.result}")
        return [(r["dn"], r.get("attributes") or {}) for r in conn.response or ()
                if r.get("type") == "searchResEntry"][:limit]


class _Session:
    """One connection for one check, opened (with StartTLS if asked) and always closed."""

    def __init__(self, directory: Directory):
        self.directory = directory
        self.conn: Any = None

    def __enter__(self) -> Any:
        import ldap3
        from ldap3.core.exceptions import LDAPException

        cfg = self.directory.config
        # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds
        self.conn = ldap3.Connection(self.directory.new_server(), receive_timeout=max(1, math.ceil(cfg.timeout)),
                                     auto_referrals=cfg.referrals, read_only=True, raise_exceptions=False,
                                     authentication=ldap3.ANONYMOUS)
        try:
            self.conn.open(read_server_info=False)
            if cfg.start_tls and not self.conn.start_tls(read_server_info=False):
                raise _unavailable(f"StartTLS refused: {self.conn.result}")
        except LDAPException as e:
            self._close()
            raise _unavailable(e) from None
        except AuthUnavailable:
            self._close()
            raise
        return self.conn

    def __exit__(self, *exc: Any) -> None:
        self._close()

    def _close(self) -> None:
        try:
            self.conn.unbind()
        except Exception:  # closing a broken socket: nothing left to do
            pass


def _unavailable(why: Any) -> AuthUnavailable:
    log.error("LDAP: %s", why)
    return AuthUnavailable(UNAVAILABLE)


def _values(attrs: dict, name: str) -> list[str]:
    """An attribute's values as strings, whatever the case of its name in the answer."""
    for key, value in attrs.items():
        if key.lower() == name.lower():
            values = value if isinstance(value, list | tuple) else [value]
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values if v]
    return []


class DirectoryAuth:
    """The auth hooks, for the server's plugin manager (registered only with --ldap-config)."""

    def __init__(self, directory: Directory):
        self.directory = directory

    @hookimpl
    def devpiserver_auth_password(self, user: str, password: str) -> list[str] | bool | None:
        if user == "root":
            return None
        return self.directory.check_password(user, password)

    @hookimpl
    def devpiserver_auth_groups(self, user: str) -> list[str] | None:
        if user == "root":
            return None
        return self.directory.groups(user)


# -- the plugin --------------------------------------------------------------------------------
@hookimpl
def devpiserver_add_parser_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ldap-config", metavar="FILE", default=None,
                        help="authenticate users and resolve their groups with an LDAP directory, "
                             "configured by this YAML file (doc/security.md, LDAP)")


@hookimpl
def devpiserver_configure(core: Core, args: argparse.Namespace) -> None:
    path = getattr(args, "ldap_config", None)
    if not path:
        return
    try:
        config = load(path)
        directory = Directory(config)
    except ValueError as e:
        raise SystemExit(f"devpi server: --ldap-config {str(path)[:200]}: {e}") from None
    except ModuleNotFoundError as e:  # ldap3 or PyYAML: both come with the server extra
        raise SystemExit(f"devpi server: --ldap-config needs {e.name}: pip install 'devpi[server]'") from None
    assert core.plugins is not None
    core.plugins.register(DirectoryAuth(directory), name="ldap-directory")
    log.info("LDAP: users and groups from %s (results cached %gs)", config.url, config.cache_ttl)
