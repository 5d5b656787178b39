"""Large simple pages are served gzip-compressed to clients that accept it."""
import gzip

import requests
from support.dists import write_wheel

JSON = "application/vnd.pypi.simple.v1+json"


def test_large_page_gzip_copy_matches_and_revalidates(server, tmp_path):
    alice = server.create_user("alice", "pw")
    server.create_index(alice, "dev")
    for i in range(30):  # enough files for a page over the gzip threshold
        assert server.upload("alice/dev", write_wheel(tmp_path, "many", f"1.{i}"), ("alice", "pw")).status_code == 200
    url = f"{server.url}/alice/dev/+simple/many/"
    for _ in range(2):  # the first answer is rendered by the app, the second comes from the fast lane
        plain = requests.get(url, headers={"Accept": JSON, "Accept-Encoding": "identity"}, timeout=30)
        zipped = requests.get(url, headers={"Accept": JSON, "Accept-Encoding": "gzip"}, timeout=30, stream=True)
        raw = zipped.raw.read(decode_content=False)
        assert "Content-Encoding" not in plain.headers
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert len(raw) < len(plain.content) / 3
        assert gzip.decompress(raw) == plain.content
        assert zipped.headers["ETag"] != plain.headers["ETag"]
        assert "Accept-Encoding" in zipped.headers["Vary"]
    again = requests.get(url, headers={"Accept": JSON, "Accept-Encoding": "gzip",
                                       "If-None-Match": zipped.headers["ETag"]}, timeout=30)
    assert again.status_code == 304
    small = requests.get(f"{server.url}/alice/dev/+simple/", headers={"Accept": JSON, "Accept-Encoding": "gzip"},
                         timeout=30, stream=True)
    assert "Content-Encoding" not in small.headers  # below the threshold: not worth compressing
