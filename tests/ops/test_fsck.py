"""``devpi fsck``: finds corrupt and missing blobs beside a running server; ``--repair``
quarantines bad bytes and makes the mirror download its files again."""
from __future__ import annotations

import hashlib

import requests
from ops_helpers import admin_json, blob_path, devpi_admin, upload_wheel, wait_until

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def _mirror_file(server, upstream, project: str):
    """Fetch one upstream wheel through root/pypi; returns (file URL, upstream file)."""
    f = upstream.add_wheel(project, "1.0")
    page_url = f"{server.url}/root/pypi/+simple/{project}/"
    page = requests.get(page_url, headers=SIMPLE_JSON, timeout=30).json()
    [entry] = [e for e in page["files"] if e["filename"] == f.filename]
    url = requests.compat.urljoin(page_url, entry["url"])
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == f.sha256
    return url, f


def _rows_of(server, table: str, sha: str) -> int:
    from ops_helpers import db

    with db(server.serverdir) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE sha256 = ?", (sha,)).fetchone()[0]


def test_fsck_finds_corrupt_and_missing_blobs_and_repair_refetches(make_server, upstream, tmp_path):
    server = make_server(mirror_url=upstream.url)
    auth = server.login("root", "root")
    server.create_index(auth, "dev", bases=[])
    rotten_url, rotten = _mirror_file(server, upstream, "fsck-rotten")
    lost_url, lost = _mirror_file(server, upstream, "fsck-lost")
    private = upload_wheel(server, auth, "root/dev", tmp_path, "fsck-private", "1.0")
    wait_until(lambda: _rows_of(server, "mirror_files", rotten.sha256) and _rows_of(server, "mirror_files", lost.sha256),
               what="mirror rows stored")
    serverdir = str(server.serverdir)
    assert admin_json("fsck", "--serverdir", serverdir)["problems"] == 0

    blob_path(server.serverdir, rotten.sha256).write_bytes(b"bit rot")
    blob_path(server.serverdir, lost.sha256).unlink()
    with open(blob_path(server.serverdir, private), "r+b") as fh:
        fh.seek(10)
        fh.write(b"XX")

    report = admin_json("fsck", "--serverdir", serverdir, expect=1)
    assert sorted(report["corrupt_blobs"]) == sorted([rotten.sha256, private])
    mirror = {(f["sha256"], f["kind"]) for f in report["mirror_files"]}
    assert mirror == {(rotten.sha256, "corrupt-blob"), (lost.sha256, "missing-blob")}
    assert [(f["sha256"], f["kind"]) for f in report["private_files"]] == [(private, "corrupt-blob")]
    assert report["problems"] == 3
    text = devpi_admin("fsck", "--serverdir", serverdir)
    assert text.returncode == 1 and "problems: 3" in text.stdout and "--repair" in text.stdout

    # the server notices the rot itself while streaming, and refuses the file from then on
    try:
        requests.get(rotten_url, timeout=30)
    except requests.RequestException:
        pass  # cut off: the hash failed at the end of the transfer
    assert requests.get(rotten_url, timeout=30).status_code == 500

    report = admin_json("fsck", "--serverdir", serverdir, "--repair", expect=1)
    assert sorted(report["quarantined"]) == sorted([rotten.sha256, private]) and report["refetch"] == 2
    quarantined = sorted(p.name.split(".")[0] for p in (server.serverdir / "quarantine").iterdir())
    assert quarantined == sorted([rotten.sha256, private])
    assert not blob_path(server.serverdir, rotten.sha256).exists()

    before = upstream.downloads(rotten.filename), upstream.downloads(lost.filename)
    for url, f in ((rotten_url, rotten), (lost_url, lost)):  # the running server downloads them again
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == f.sha256
    assert (upstream.downloads(rotten.filename), upstream.downloads(lost.filename)) == (before[0] + 1, before[1] + 1)
    wait_until(lambda: _rows_of(server, "mirror_files", rotten.sha256) and _rows_of(server, "mirror_files", lost.sha256),
               what="mirror rows stored again")

    # the private file cannot be fetched again: never served wrong, still reported
    r = requests.get(f"{server.url}/root/dev/+simple/fsck-private/", headers=SIMPLE_JSON, timeout=30)
    priv_url = requests.compat.urljoin(f"{server.url}/root/dev/+simple/fsck-private/", r.json()["files"][0]["url"])
    assert requests.get(priv_url, timeout=30).status_code == 404
    report = admin_json("fsck", "--serverdir", serverdir, expect=1)
    assert report["mirror_files"] == [] and report["corrupt_blobs"] == []
    assert [(f["sha256"], f["kind"]) for f in report["private_files"]] == [(private, "missing-blob")]


def test_fsck_reports_a_missing_core_metadata_blob(make_server, tmp_path):
    server = make_server()
    auth = server.login("root", "root")
    server.create_index(auth, "dev", bases=[])
    upload_wheel(server, auth, "root/dev", tmp_path, "meta-only", "1.0")
    from ops_helpers import db

    with db(server.serverdir) as conn:
        [meta] = [r[0] for r in conn.execute("SELECT core_metadata_sha256 FROM files")]
    blob_path(server.serverdir, meta).unlink()
    report = admin_json("fsck", "--serverdir", str(server.serverdir), expect=1)
    assert [(f["sha256"], f["kind"]) for f in report["core_metadata"]] == [(meta, "missing-blob")]
    assert report["private_files"] == []
