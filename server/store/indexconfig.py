"""Index configuration: the devpi keys, their defaults and normalisation.

Clients send strings for everything (``volatile=False``, ``bases=a/b,c/d``),
so every key has a normaliser that accepts the string form. Checks that need
the database (do the bases exist, is there a cycle) live in ``catalog``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..packaging.names import InvalidName, check_user_or_index_name, is_project_name, normalize_name
from .field_limits import FieldTooLarge, check_fields


class ConfigError(ValueError):
    """A config the user sent that cannot be stored; the message says why."""


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "0", "off", ""):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"expected a boolean, got {value!r}")


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"expected a list of strings, got {value!r}")
        return [v.strip() for v in value if v.strip()]
    raise ConfigError(f"expected a list, got {value!r}")


def _bases(value: Any) -> list[str]:
    out: list[str] = []
    for base in _list(value):
        parts = base.strip("/").split("/")
        if len(parts) != 2:
            raise ConfigError(f"base index {base!r} is not in the form user/index")
        try:
            check_user_or_index_name(parts[0], "user name")
            check_user_or_index_name(parts[1], "index name")
        except InvalidName as e:
            raise ConfigError(str(e)) from None
        name = "/".join(parts)
        if name not in out:
            out.append(name)
    return out


def _acl(value: Any) -> list[str]:
    out = []
    for p in _list(value):
        if p.upper() in (":ANONYMOUS:", ":AUTHENTICATED:"):
            p = p.upper()
        if p not in out:
            out.append(p)
    return out


def _whitelist(value: Any) -> list[str]:
    out = []
    for p in _list(value):
        if p != "*" and not is_project_name(p):
            raise ConfigError(f"mirror_whitelist: {p!r} is no project name (or '*' for all)")
        p = "*" if p == "*" else normalize_name(p)
        if p not in out:
            out.append(p)
    return out


def _inheritance(value: Any) -> str:
    if value not in ("intersection", "union"):
        raise ConfigError("mirror_whitelist_inheritance must be 'intersection' or 'union'")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://", "file://")):
        raise ConfigError(f"mirror_url must be an http(s) URL, got {value!r}")
    return value  # stored as sent (the original does); the mirror adds the slash it joins with


MAX_INT = 2**53  # what every JSON reader holds exactly


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"expected a whole number, got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"expected a whole number, got {value!r}") from None
    if not 0 <= n <= MAX_INT:
        raise ConfigError(f"expected a number from 0 to {MAX_INT}, got {value!r}")
    return n


def _free(value: Any) -> Any:
    return value


Normaliser = Callable[[Any], Any]

COMMON_KEYS: dict[str, Normaliser] = {"title": _free, "description": _free, "custom_data": _free,
                                      "volatile": _bool, "acl_read": _acl}
# Who may read an index when its config names nobody: everyone, as before acl_read existed.
DEFAULT_ACL_READ = (":ANONYMOUS:",)


def acl_read_of(config: dict[str, Any]) -> list[str] | tuple[str, ...]:
    """An index's readers: the default only when the key is missing. An empty list (every
    reader taken out, ``acl_read-=alice``) names none: the owner and root only, never
    everyone (fail closed)."""
    acl = config.get("acl_read")
    return DEFAULT_ACL_READ if acl is None else acl
STAGE_KEYS: dict[str, Normaliser] = {
    "bases": _bases, "acl_upload": _acl, "acl_toxresult_upload": _acl,
    "mirror_whitelist": _whitelist, "mirror_whitelist_inheritance": _inheritance,
}
MIRROR_KEYS: dict[str, Normaliser] = {
    "mirror_url": _url, "mirror_cache_expiry": _int, "mirror_web_url_fmt": _free,
    "mirror_no_project_list": _bool, "mirror_use_external_urls": _bool,
    "mirror_ignore_serial_header": _bool, "mirror_provides_core_metadata": _bool,
}
# Keys that are dropped silently on a mirror, as devpi does.
MIRROR_IGNORED = {"bases", "acl_upload", "mirror_whitelist", "acl_toxresult_upload",
                  "mirror_whitelist_inheritance"}
LIST_KEYS = {"acl_read", "bases", "acl_upload", "acl_toxresult_upload", "mirror_whitelist"}

DEFAULT_MIRROR_CACHE_EXPIRY = 1800


def register_stage_key(key: str, normaliser: Normaliser, default: Any = None,
                       is_list: bool = False) -> None:
    """Let another part of the server (e.g. test gating) add a stage config key."""
    STAGE_KEYS[key] = normaliser
    if default is not None:
        _EXTRA_STAGE_DEFAULTS[key] = default
    if is_list:
        LIST_KEYS.add(key)


_EXTRA_STAGE_DEFAULTS: dict[str, Any] = {}
# Index types besides "stage" and "mirror" that plugins registered (devpiserver_index_types).
_PLUGIN_TYPES: dict[str, Any] = {}
_PLUGIN_TYPE_KEYS: dict[str, dict[str, Normaliser]] = {}


def index_types() -> list[str]:
    return ["stage", "mirror", *_PLUGIN_TYPES]


def register_index_type(index_type: Any) -> None:
    """A plugin's ``hooks.IndexType``; "stage" and "mirror" have their keys here already."""
    if index_type.name == "mirror":
        return
    if index_type.name in index_types():
        raise ValueError(f"index type {index_type.name!r} is registered twice")
    _PLUGIN_TYPES[index_type.name] = index_type
    _PLUGIN_TYPE_KEYS[index_type.name] = {}
    for key in index_type.keys:
        register_key(index_type.name, key)


def register_key(index_type: str, key: Any) -> None:
    """A plugin's ``hooks.ConfigKey`` for indexes of ``index_type``; a bad value is a 400."""
    normalise = _checked(key.normalise)
    if index_type == "stage":
        register_stage_key(key.name, normalise, key.default, key.is_list)
        return
    known = MIRROR_KEYS if index_type == "mirror" else _PLUGIN_TYPE_KEYS[index_type]
    known[key.name] = normalise
    if key.is_list:
        LIST_KEYS.add(key.name)


def _checked(normalise: Normaliser) -> Normaliser:
    def checked(value: Any) -> Any:
        try:
            return normalise(value)
        except ConfigError:
            raise
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from None
    return checked


def defaults(index_type: str, owner: str) -> dict[str, Any]:
    if index_type == "stage":
        d = {"type": "stage", "bases": [], "volatile": True, "acl_upload": [owner],
             "acl_toxresult_upload": [":ANONYMOUS:"], "mirror_whitelist": [],
             "mirror_whitelist_inheritance": "intersection"}
        for key, value in _EXTRA_STAGE_DEFAULTS.items():
            d[key] = list(value) if isinstance(value, list) else value
        return d
    if index_type == "mirror":
        return {"type": "mirror", "volatile": True, "mirror_cache_expiry": DEFAULT_MIRROR_CACHE_EXPIRY}
    if index_type in _PLUGIN_TYPES:
        make = _PLUGIN_TYPES[index_type].defaults
        return {"type": index_type, "volatile": True, **(make(owner) if make else {})}
    raise ConfigError(f"unknown index type {index_type!r}")


def _keys_for(index_type: str) -> dict[str, Normaliser]:
    if index_type in _PLUGIN_TYPE_KEYS:
        return {**COMMON_KEYS, **_PLUGIN_TYPE_KEYS[index_type]}
    return {**COMMON_KEYS, **(STAGE_KEYS if index_type == "stage" else MIRROR_KEYS)}


def normalize(index_type: str, given: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Merge ``given`` onto ``base`` (defaults or the current config), validated."""
    if not isinstance(given, dict):
        raise ConfigError("index config must be a JSON object")
    given = dict(given)
    given.pop("projects", None)
    if "type" in given and given.pop("type") != index_type:
        raise ConfigError("the 'type' of an index can't be changed")
    known = _keys_for(index_type)
    if index_type == "mirror":
        for key in MIRROR_IGNORED:
            given.pop(key, None)
    unknown = sorted(k for k in given if k not in known)
    if unknown:
        raise ConfigError("indexconfig got unexpected keyword arguments: "
                          + ", ".join(f"{k}={given[k]!r}" for k in unknown))
    config = dict(base)
    for key, value in given.items():
        # an emptied text field goes away; an emptied acl_read names no reader (the owner and
        # root only): it must never fall back to the default, which is everyone
        if key in COMMON_KEYS and key not in ("volatile", "acl_read") and value in (None, ""):
            config.pop(key, None)
            continue
        config[key] = known[key](value)
    try:
        check_fields(config)  # served to everyone on every listing: doc/api.md has the limits
    except FieldTooLarge as e:
        raise ConfigError(str(e)) from None
    return config


def apply_patch_items(current: dict[str, Any], items: Iterable[Any], index_type: str,
                      owner: str) -> dict[str, Any]:
    """Apply devpi's list form of PATCH: "k=v" sets, "k+=v" adds, "k-=v" removes, "k-=" drops."""
    config = {k: (list(v) if isinstance(v, list) else v) for k, v in current.items()}
    known = _keys_for(index_type)
    defaults_ = defaults(index_type, owner)
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"expected 'key=value' items, got {item!r}")
        key, value = item.split("=", 1)
        if key.endswith("+"):
            key = key[:-1]
            _check_list_key(key, known)
            values = known[key](value)
            config[key] = list(config.get(key) or []) + [v for v in values if v not in (config.get(key) or [])]
        elif key.endswith("-"):
            key = key[:-1]
            if key not in known:
                raise ConfigError(f"unknown config key {key!r}")
            if value == "":
                if key in defaults_:
                    raise ConfigError("Default values can't be removed.")
                config.pop(key, None)
            else:
                _check_list_key(key, known)
                for v in known[key](value):
                    if v not in (config.get(key) or []):
                        raise ConfigError(f"The '{key}' setting doesn't have value '{v}'")
                    config[key] = [x for x in config[key] if x != v]
        elif key == "type":
            if value != index_type:
                raise ConfigError("the 'type' of an index can't be changed")
        else:
            if key not in known:
                raise ConfigError(f"indexconfig got unexpected keyword arguments: {key}={value!r}")
            config[key] = value
    return normalize(index_type, {k: v for k, v in config.items() if k != "type"}, {"type": index_type})


def _check_list_key(key: str, known: dict[str, Normaliser]) -> None:
    if key not in known:
        raise ConfigError(f"unknown config key {key!r}")
    if key not in LIST_KEYS:
        raise ConfigError(f"the '{key}' setting is not a list")
