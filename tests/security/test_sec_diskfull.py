"""A full disk (issue 24, finding 15).

An uploader (or simply a busy server) fills the disk that holds the server dir. What must
hold: an upload that meets ENOSPC is answered 507 with "no space left on the server" (not a
generic 500), leaves no temp file behind, and the next upload after space is freed works
without a restart. The server dir lives on a small tmpfs mounted for this test, so the
machine's own disk is never filled.
"""
from __future__ import annotations

import io
import os
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
from support.dists import wheel_bytes
from support.server import ServerProcess

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 24 MiB tmpfs, unmounted afterwards. Mounting needs root; only a developer's machine
    without it may skip (CI runs as root and must run this test)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs on CI: {p.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free on the disk."""
    ballast = disk / "ballast"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(ballast, "wb") as f:
        f.write(bytes(max(free - leave, 0)))
    return ballast


def upload(s, index, filename, data, auth, **fields):
    return requests.post(f"{s.url}/{index}/", data={":action": "file_upload", **fields},
                         files={"content": (filename, data)}, auth=auth, timeout=60)


def doc_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("index.html", b"<p>docs</p>")
        zf.writestr("blob.bin", os.urandom(3 * MiB))
    return buf.getvalue()


def temp_files(serverdir: Path) -> list[str]:
    return sorted(p.name for p in (serverdir / "blobs" / "tmp").rglob("*")
                  if p.is_file() and p.name.startswith("upload-"))


def test_disk_full_is_507_and_recovers(small_disk):
    """Uploads of a 4 MB wheel and a 3 MB doc zip with 1 MB free: each a 507 whose message
    says "no space left on the server", no upload temp file left, and after the ballast is
    removed both uploads succeed on the same server process."""
    serverdir = small_disk / "server"
    s = ServerProcess(serverdir).start()
    try:
        user = "df" + uuid.uuid4().hex[:6]
        auth = s.create_user(user, "pw")
        s.create_index(auth, "dev")
        index, name = f"{user}/dev", "fullpkg"
        filename, data = wheel_bytes(name, "1.0", module_body=f"DATA = {os.urandom(3 * MiB).hex()!r}\n")
        assert len(data) > 3 * MiB
        ballast = fill(small_disk, 1 * MiB)
        r = upload(s, index, filename, data, (user, "pw"), name=name, version="1.0")
        assert r.status_code == 507, (r.status_code, r.text[:300])
        assert r.json()["message"] == "no space left on the server"
        assert "no space left on the server" in r.reason
        r = upload(s, index, f"{name}-1.0.doc.zip", doc_zip(), (user, "pw"), name=name, version="1.0",
                   **{":action": "doc_upload"})
        assert r.status_code == 507, (r.status_code, r.text[:300])
        assert temp_files(serverdir) == []
        ballast.unlink()
        r = upload(s, index, filename, data, (user, "pw"), name=name, version="1.0")
        assert r.status_code == 200, r.text
        r = upload(s, index, f"{name}-1.0.doc.zip", doc_zip(), (user, "pw"), name=name, version="1.0",
                   **{":action": "doc_upload"})
        assert r.status_code == 200, r.text
        links = s.api("GET", f"/{index}/{name}/1.0").json()["result"]["+links"]
        [href] = [x["href"] for x in links if x["rel"] == "releasefile"]
        assert requests.get(href, timeout=30).content == data
    finally:
        s.stop()
