"""A release's metadata is the union of what its files say; a later file never blanks it."""
from support.dists import write_sdist, write_wheel


def test_sdist_without_description_keeps_wheels_description(server, tmp_path):
    alice = server.create_user("alice", "pw")
    server.create_index(alice, "dev")
    wheel = write_wheel(tmp_path, "pkg", "1.0", summary="a summary", description="Long words here.")
    sdist = write_sdist(tmp_path, "pkg", "1.0")  # PKG-INFO without summary or description
    for dist in (wheel, sdist):
        assert server.upload("alice/dev", dist, ("alice", "pw")).status_code == 200
    data = server.api("GET", "/alice/dev/pkg/1.0").json()["result"]
    assert data["summary"] == "a summary"
    assert "Long words here." in data["description"]
    assert sorted(link["href"].rsplit("/", 1)[1] for link in data["+links"]) == sorted([wheel.name, sdist.name])
