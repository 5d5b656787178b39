"""Size limits on what users store in user and index configs.

Every field is served back to everyone (``GET /`` lists all users with all
their indexes), so one 9 MB description made that page 56 MB. Values are
measured as UTF-8 (strings) or as compact JSON (anything else, e.g.
``custom_data``); lists are limited in length and in each item's size.
"""
from __future__ import annotations

import json
from typing import Any

KIB = 1024
LONG_TEXT = 64 * KIB  # description, custom_data
SHORT_TEXT = 1 * KIB  # every other field (title, email, mirror_url, each list item, ...)
LONG_FIELDS = frozenset({"description", "custom_data"})
LIST_LIMITS = {"acl_read": 256, "bases": 32, "acl_upload": 256, "acl_toxresult_upload": 256, "toxresult_trusted": 256,
               "mirror_whitelist": 1024, "push_requires": 64}
DEFAULT_LIST_LIMIT = 256


class FieldTooLarge(ValueError):
    """The message names the field and the limit."""


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(json.dumps(value, separators=(",", ":")).encode())


def check_field(key: str, value: Any) -> None:
    if isinstance(value, (list, tuple)) and key not in LONG_FIELDS:
        limit = LIST_LIMITS.get(key, DEFAULT_LIST_LIMIT)
        if len(value) > limit:
            raise FieldTooLarge(f"'{key}' has {len(value)} entries, limit is {limit}")
        for item in value:
            if _size(item) > SHORT_TEXT:
                raise FieldTooLarge(f"an entry of '{key}' is over the limit of {SHORT_TEXT} bytes")
        return
    if value is None or isinstance(value, (bool, int, float)):
        return
    limit = LONG_TEXT if key in LONG_FIELDS else SHORT_TEXT
    size = _size(value)
    if size > limit:
        raise FieldTooLarge(f"'{key}' is {size} bytes, limit is {limit} bytes")


def check_fields(config: dict[str, Any]) -> None:
    """Raise FieldTooLarge for the first field over its limit."""
    for key, value in config.items():
        check_field(key, value)
