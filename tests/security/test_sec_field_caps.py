"""Finding 12 (quotas): fields of users and indexes without a size limit.

Anyone may create a user, and every user and index field is served to
everyone on ``GET /``: one 9 MB user description made that page 56 MB. Every
field is now capped (description and custom_data 64 KiB, every other string
1 KiB, list keys by entry count), refused with 400 and a message that names
the field and the limit, on create and on both PATCH forms.
"""
from __future__ import annotations

from support.naming import unique

KIB = 1024


def refused(r, field: str, limit: int) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    message = r.json()["message"]
    assert field in message and str(limit) in message, message


def test_nine_megabyte_user_description_is_refused(engine_srv):
    """The reported case: anonymous PUT /<name> with a 9 MB description."""
    name = unique("big")
    r = engine_srv.api("PUT", f"/{name}", json={"password": "pw", "description": "x" * (9 * KIB * KIB)})
    refused(r, "description", 64 * KIB)
    assert engine_srv.api("GET", f"/{name}").status_code == 404
    assert len(engine_srv.api("GET", "/").content) < 1024 * KIB


def test_user_fields_are_capped_on_create_and_modify(engine_srv):
    auth = engine_srv.create_user(unique("u"), "pw", description="d" * (64 * KIB), title="t" * KIB)
    user = auth[0]
    refused(engine_srv.api("PATCH", f"/{user}", json={"title": "t" * (KIB + 1)}, auth=auth), "title", KIB)
    refused(engine_srv.api("PATCH", f"/{user}", json={"email": "e" * (2 * KIB) + "@x"}, auth=auth), "email", KIB)
    refused(engine_srv.api("PATCH", f"/{user}", json={"custom_data": {"k": "v" * (64 * KIB)}}, auth=auth),
            "custom_data", 64 * KIB)
    refused(engine_srv.api("PUT", f"/{unique('u')}", json={"password": "pw", "title": "é" * 600}), "title", KIB)
    assert engine_srv.api("GET", f"/{user}").json()["result"]["title"] == "t" * KIB


def test_index_fields_are_capped_on_create_and_both_patch_forms(engine_srv):
    auth = engine_srv.create_user(unique("ix"), "pw")
    user = auth[0]
    refused(engine_srv.api("PUT", f"/{user}/big", json={"description": "x" * (9 * KIB * KIB)}, auth=auth),
            "description", 64 * KIB)
    assert engine_srv.api("GET", f"/{user}/big").status_code == 404
    engine_srv.create_index(auth, "dev", description="x" * (64 * KIB))
    refused(engine_srv.api("PATCH", f"/{user}/dev", json={"title": "t" * (KIB + 1)}, auth=auth), "title", KIB)
    refused(engine_srv.api("PATCH", f"/{user}/dev", json=["title=" + "t" * (KIB + 1)], auth=auth), "title", KIB)
    many = ",".join(f"u{i}" for i in range(257))
    refused(engine_srv.api("PATCH", f"/{user}/dev", json={"acl_upload": many}, auth=auth), "acl_upload", 256)
    refused(engine_srv.api("PATCH", f"/{user}/dev", json=["acl_toxresult_upload+=" + many], auth=auth),
            "acl_toxresult_upload", 256)
    refused(engine_srv.api("PATCH", f"/{user}/dev", json={"acl_upload": "a" * (KIB + 1)}, auth=auth), "acl_upload", KIB)
    names = ",".join(f"p{i}" for i in range(1025))
    refused(engine_srv.api("PATCH", f"/{user}/dev", json={"mirror_whitelist": names}, auth=auth),
            "mirror_whitelist", 1024)
    refused(engine_srv.api("PATCH", f"/{user}/dev", json={"custom_data": ["x" * (64 * KIB)]}, auth=auth),
            "custom_data", 64 * KIB)
    cfg = engine_srv.api("GET", f"/{user}/dev").json()["result"]
    assert cfg["acl_upload"] == [user] and "title" not in cfg


def test_bases_list_is_capped(engine_srv):
    auth = engine_srv.create_user(unique("bl"), "pw")
    user = auth[0]
    for i in range(33):
        engine_srv.create_index(auth, f"b{i}")
    bases = ",".join(f"{user}/b{i}" for i in range(33))
    refused(engine_srv.api("PUT", f"/{user}/top", json={"bases": bases}, auth=auth), "bases", 32)
    ok = ",".join(f"{user}/b{i}" for i in range(32))
    assert engine_srv.api("PUT", f"/{user}/top", json={"bases": ok}, auth=auth).status_code == 200
