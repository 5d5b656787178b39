"""The ``--ldap-config`` file: read, checked and turned into ``LdapConfig`` at start-up.

The shape is the devpi-ldap plugin's (a file written for it works as it is, under its
``devpi-ldap:`` key or at the top level), plus the bounds this server insists on::

    url: ldap://ldap.example.com        # or ldaps://... (TLS from the first byte)
    user_template: "uid={username},ou=people,dc=example,dc=com"   # or user_search:
    user_search:
      base: "ou=people,dc=example,dc=com"
      filter: "(&(objectClass=inetOrgPerson)(uid={username}))"
      scope: whole-subtree              # base-object | single-level | whole-subtree
      attribute_name: distinguishedName # optional: the attribute holding the DN (AD); default: the entry's DN
      userdn: "cn=reader,dc=example,dc=com"   # who searches (default: an anonymous bind)
      password: "..."
    group_search:
      base: "ou=groups,dc=example,dc=com"
      filter: "(&(objectClass=groupOfNames)(member={userdn}))"
      attribute_name: cn
      userdn: ...                       # default: the user's own bind (password logins only)
      password: ...
    referrals: true                     # follow referrals (false for Active Directory, usually)
    reject_as_unknown: false            # a failed bind: reject (default), or let local users decide
    start_tls: false                    # upgrade ldap:// with StartTLS
    tls:
      validate: required                # required | optional | none
      ca_certs_file: /etc/ssl/certs/company-ca.pem
    timeout: 10                         # seconds to connect, and to wait for each answer
    cache_ttl: 60                       # seconds a verified password / group list is reused

Everything wrong with the file is a ``ValueError`` with one readable line naming the key;
``main`` turns it into the exit message. Unknown keys are refused: a misspelt
``group_serach`` would otherwise silently drop every group.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FILE_SIZE = 1024 * 1024
SCOPES = {"base-object": "BASE", "base": "BASE", "single-level": "LEVEL", "one": "LEVEL", "level": "LEVEL",
          "whole-subtree": "SUBTREE", "subtree": "SUBTREE", "sub": "SUBTREE"}
VALIDATE = {"required": "CERT_REQUIRED", "optional": "CERT_OPTIONAL", "none": "CERT_NONE"}
TOP_KEYS = {"url", "user_template", "user_search", "group_search", "referrals", "reject_as_unknown",
            "start_tls", "start-tls", "tls", "timeout", "cache_ttl"}
SEARCH_KEYS = {"base", "filter", "scope", "attribute_name", "userdn", "password"}
TLS_KEYS = {"validate", "ca_certs_file"}
DEFAULT_TIMEOUT = 10.0
DEFAULT_CACHE_TTL = 60.0
MAX_TIMEOUT = 300.0
MAX_CACHE_TTL = 86400.0


@dataclass(frozen=True)
class Search:
    base: str
    filter: str
    scope: str = "SUBTREE"  # ldap3's constant name
    attribute_name: str | None = None
    userdn: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class LdapConfig:
    url: str
    user_template: str | None = None
    user_search: Search | None = None
    group_search: Search | None = None
    referrals: bool = True
    reject_as_unknown: bool = False
    start_tls: bool = False
    tls_validate: str = "CERT_REQUIRED"
    ca_certs_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    cache_ttl: float = DEFAULT_CACHE_TTL

    @property
    def uses_tls(self) -> bool:
        return self.url.lower().startswith("ldaps://") or self.start_tls


def load(path: str | Path) -> LdapConfig:
    """Read and check the file; ``ValueError`` with one line for anything wrong."""
    import yaml

    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise ValueError(f"cannot read it: {e.strerror}") from None
    if len(raw) > MAX_FILE_SIZE:
        raise ValueError(f"larger than {MAX_FILE_SIZE} bytes")
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"not valid YAML{where}") from None
    if isinstance(doc, dict) and set(doc) == {"devpi-ldap"}:
        doc = doc["devpi-ldap"]
    return parse(doc)


def parse(doc: Any) -> LdapConfig:
    if not isinstance(doc, dict):
        raise ValueError("expected a mapping of settings (url, user_template or user_search, ...)")
    unknown = sorted(str(k) for k in doc if k not in TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    url = _text(doc, "url", required=True)
    if not url.lower().startswith(("ldap://", "ldaps://")):
        raise ValueError(f"url must start with ldap:// or ldaps://, not {url[:80]!r}")
    template = _text(doc, "user_template")
    user_search = _search(doc.get("user_search"), "user_search", ("username",))
    if (template is None) == (user_search is None):
        raise ValueError("give exactly one of user_template and user_search")
    if template is not None:
        _check_placeholders(template, "user_template", ("username",))
    group_search = _search(doc.get("group_search"), "group_search", ("username", "userdn"))
    if group_search is not None and not group_search.attribute_name:
        raise ValueError("group_search needs attribute_name (the attribute naming a group, e.g. cn)")
    tls = doc.get("tls") or {}
    if not isinstance(tls, dict):
        raise ValueError("tls must be a mapping (validate, ca_certs_file)")
    unknown = sorted(str(k) for k in tls if k not in TLS_KEYS)
    if unknown:
        raise ValueError(f"unknown tls setting {unknown[0]!r} (known: {', '.join(sorted(TLS_KEYS))})")
    validate = str(tls.get("validate", "required")).lower()
    if validate not in VALIDATE:
        raise ValueError(f"tls.validate must be one of {', '.join(VALIDATE)}, not {validate[:40]!r}")
    ca = _text(tls, "ca_certs_file", where="tls.ca_certs_file")
    if ca is not None and not Path(ca).is_file():
        raise ValueError(f"tls.ca_certs_file {ca[:200]!r} is not a readable file")
    start_tls = _flag(doc, "start_tls", _flag(doc, "start-tls", False))
    if start_tls and url.lower().startswith("ldaps://"):
        raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
    return LdapConfig(url=url, user_template=template, user_search=user_search, group_search=group_search,
                      referrals=_flag(doc, "referrals", True),
                      reject_as_unknown=_flag(doc, "reject_as_unknown", False), start_tls=start_tls,
                      tls_validate=VALIDATE[validate], ca_certs_file=ca,
                      timeout=_seconds(doc, "timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT),
                      cache_ttl=_seconds(doc, "cache_ttl", DEFAULT_CACHE_TTL, MAX_CACHE_TTL))


def _search(value: Any, name: str, placeholders: tuple[str, ...]) -> Search | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping (base, filter, scope, attribute_name, userdn, password)")
    unknown = sorted(str(k) for k in value if k not in SEARCH_KEYS)
    if unknown:
        raise ValueError(f"unknown {name} setting {unknown[0]!r} (known: {', '.join(sorted(SEARCH_KEYS))})")
    base = _text(value, "base", required=True, where=f"{name}.base")
    filt = _text(value, "filter", required=True, where=f"{name}.filter")
    if not (filt.startswith("(") and filt.endswith(")")):
        raise ValueError(f"{name}.filter must be an LDAP filter in parentheses, not {filt[:80]!r}")
    _check_placeholders(filt, f"{name}.filter", placeholders)
    scope = str(value.get("scope", "whole-subtree")).lower()
    if scope not in SCOPES:
        raise ValueError(f"{name}.scope must be base-object, single-level or whole-subtree, not {scope[:40]!r}")
    userdn = _text(value, "userdn", where=f"{name}.userdn")
    password = _text(value, "password", where=f"{name}.password")
    if (userdn is None) != (password is None) or password == "":
        raise ValueError(f"{name}: give userdn and a non-empty password together (an empty password "
                         "is an anonymous bind)")
    return Search(base=base, filter=filt, scope=SCOPES[scope],
                  attribute_name=_text(value, "attribute_name", where=f"{name}.attribute_name"),
                  userdn=userdn, password=password)


def _check_placeholders(template: str, name: str, allowed: tuple[str, ...]) -> None:
    """Only ``{username}`` (and ``{userdn}`` in group filters): any other brace would raise
    at the first login instead of now."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    for f in fields:
        if f not in allowed:
            raise ValueError(f"{name}: unknown placeholder {{{f}}} (use {', '.join('{' + a + '}' for a in allowed)})")


def _text(doc: dict, key: str, *, required: bool = False, where: str | None = None) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where or key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where or key} must be a non-empty string")
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"{where or key} contains control characters")
    return value


def _flag(doc: dict, key: str, default: bool) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {str(value)[:40]!r}")
    return value


def _seconds(doc: dict, key: str, default: float, limit: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value <= limit) \
            or math.isnan(value):
        raise ValueError(f"{key} must be a number of seconds above 0 and at most {limit:g}, not {str(value)[:40]!r}")
    return float(value)
