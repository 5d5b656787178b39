"""Hostile documentation zips (issue 24, findings 5 and 17).

The attacker may upload docs to a stage and sends a small zip that inflates hugely, has
too many members, is encrypted, uses a compression method nobody can read, or names paths
outside its tree. What must hold: each is refused at upload with a 400 whose message says
why; members are streamed when served, so concurrent readers of a large page do not hold
it in memory; nothing is stored for a refused zip.
"""
from __future__ import annotations

import io
import os
import struct
import threading
import zipfile

import pytest
import requests
from support.dists import wheel_bytes
from support.naming import unique

MiB = 1024 * 1024


@pytest.fixture
def project(srv):
    """(auth, index, project name) with release 1.0 uploaded."""
    user = unique("doc")
    auth = srv.create_user(user, "pw")
    srv.create_index(auth, "dev")
    index, name = f"{user}/dev", unique("docpkg")
    filename, data = wheel_bytes(name, "1.0")
    r = requests.post(f"{srv.url}/{index}/", data={":action": "file_upload", "name": name, "version": "1.0"},
                      files={"content": (filename, data)}, auth=(user, "pw"), timeout=60)
    assert r.status_code == 200, r.text
    return (user, "pw"), index, name


def doc_upload(srv, index, name, auth, data):
    return requests.post(f"{srv.url}/{index}/", data={":action": "doc_upload", "name": name, "version": "1.0"},
                         files={"content": (f"{name}-1.0.doc.zip", data)}, auth=auth, timeout=120)


def assert_refused(r, *words):
    assert r.status_code == 400, (r.status_code, r.text[:300])
    message = r.json()["message"]
    for word in words:
        assert word in message, message


def has_docs(srv, index, name) -> bool:
    links = srv.api("GET", f"/{index}/{name}/1.0").json()["result"].get("+links", [])
    return any(link["rel"] == "doczip" for link in links)


def zip_of(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def patch_member(data: bytes, flag_bits: int | None = None, method: int | None = None) -> bytes:
    """Rewrite the flags or compression method of every member, in its local header and in
    the central directory (what a hostile tool can write but zipfile will not)."""
    out = bytearray(data)
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        pos = out.find(sig)
        while pos != -1:
            if flag_bits is not None:
                struct.pack_into("<H", out, pos + flag_at, struct.unpack_from("<H", out, pos + flag_at)[0] | flag_bits)
            if method is not None:
                struct.pack_into("<H", out, pos + method_at, method)
            pos = out.find(sig, pos + 4)
    return bytes(out)


def test_encrypted_and_unknown_method_zips_are_400(srv, project):
    """A zip whose member carries the encrypted flag, or compression method 99 (WinZip AES),
    made the landed code answer 500. Both must be a 400 saying why, with nothing stored."""
    auth, index, name = project
    plain = zip_of({"index.html": b"<p>hi</p>"}, zipfile.ZIP_STORED)
    r = doc_upload(srv, index, name, auth, patch_member(plain, flag_bits=0x1))
    assert_refused(r, "encrypted")
    r = doc_upload(srv, index, name, auth, patch_member(plain, method=99))
    assert_refused(r, "compression method 99")
    assert not has_docs(srv, index, name)


def test_zip_bombs_and_path_tricks_are_400(srv, project):
    """A 150 MB member of zeros (a ~150 KB zip), 60,000 empty members (refused before the
    directory is parsed), a 2,006-character member name, and members named ``../x`` or
    ``/etc/x`` must each be refused at upload with a 400 naming the limit or the
    trick; a normal doc zip still uploads afterwards."""
    auth, index, name = project
    r = doc_upload(srv, index, name, auth, zip_of({"index.html": b"x", "big.bin": bytes(150 * MiB)}))
    assert_refused(r, "big.bin", "limit")
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as zf:
        for i in range(60_000):
            zf.writestr(f"p/{i}.html", b"")
    r = doc_upload(srv, index, name, auth, many.getvalue())
    assert_refused(r, "60000 entries", "50000")
    r = doc_upload(srv, index, name, auth, zip_of({"index.html": b"x", "d/" * 1000 + "x.html": b"x"}))
    assert_refused(r, "2006 characters", "1024")
    for trick in ("../escape.html", "/etc/evil.html"):
        r = doc_upload(srv, index, name, auth, zip_of({"index.html": b"x", trick: b"x"}))
        assert_refused(r, "outside the documentation tree")
    assert not has_docs(srv, index, name)
    r = doc_upload(srv, index, name, auth, zip_of({"index.html": b"<p>fine</p>"}))
    assert r.status_code == 200, r.text
    assert requests.get(f"{srv.url}/{index}/{name}/1.0/+doc/index.html", timeout=30).content == b"<p>fine</p>"


def rss_peak_kib(srv) -> int:
    with open(f"/proc/{srv.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_doc_members_are_streamed_not_read_whole(srv, project):
    """A doc zip with one 120 MiB member (within the member limit): three concurrent GETs of it
    made the landed code hold three copies (finding 5 took RSS to 7.3 GB with 900 MB). Every
    byte must arrive, with a Content-Length, while the server's peak memory grows by far less
    than one copy."""
    auth, index, name = project
    block = os.urandom(256) + bytes(40_000)  # its random part repeats beyond deflate's window: ~130:1
    big = block * (120 * MiB // len(block))
    r = doc_upload(srv, index, name, auth, zip_of({"index.html": b"<p>x</p>", "big.bin": big}))
    assert r.status_code == 200, r.text
    url = f"{srv.url}/{index}/{name}/1.0/+doc/big.bin"
    before = rss_peak_kib(srv)
    got: list[tuple[int, int | None]] = []

    def fetch():
        with requests.get(url, stream=True, timeout=120) as resp:
            size = sum(len(c) for c in resp.iter_content(1 << 20))
            got.append((size, int(resp.headers.get("Content-Length", -1))))

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert got == [(len(big), len(big))] * 3
    grew_mib = (rss_peak_kib(srv) - before) / 1024
    # the landed code grew by three copies and more (644 MiB for 3 x 100 MiB); a streaming
    # server's growth is bounded by its per-connection buffers, not by the member's size
    assert grew_mib < 120, f"peak RSS grew by {grew_mib:.0f} MiB serving a 120 MiB member 3 times at once"
