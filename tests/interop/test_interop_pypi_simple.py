"""The `pypi-simple` library parses our PEP 503 HTML and PEP 691 JSON pages alike.

It runs in its own venv (a small script prints what it parsed as JSON). The
pages come from a stage that merges root/pypi, so they hold uploaded files and
mirrored ones, among them a yanked file with a reason, a wheel with PEP 658
core metadata and files with Requires-Python.
"""
from __future__ import annotations

import json
import textwrap

import pytest
from interop.helpers import run, sha256, unique
from support.dists import write_sdist, write_wheel

PARSE = textwrap.dedent("""\
    import json, sys
    from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, PyPISimple

    endpoint, project = sys.argv[1:3]
    out = {}
    with PyPISimple(endpoint) as client:
        for fmt, accept in (("html", ACCEPT_HTML_ONLY), ("json", ACCEPT_JSON_ONLY)):
            page = client.get_project_page(project, accept=accept)
            packages = []
            for p in page.packages:
                entry = {"filename": p.filename, "url": p.url, "project": p.project, "version": p.version,
                         "package_type": p.package_type, "digests": p.digests,
                         "requires_python": p.requires_python, "is_yanked": p.is_yanked,
                         "yanked_reason": p.yanked_reason, "has_metadata": p.has_metadata,
                         "metadata_digests": p.metadata_digests}
                if p.has_metadata:
                    entry["metadata"] = client.get_package_metadata(p)  # verifies the digest
                packages.append(entry)
            index = client.get_index_page(accept=accept)
            out[fmt] = {"project": page.project, "repository_version": page.repository_version,
                        "packages": packages, "projects": sorted(index.projects)}
    print(json.dumps(out))
    """)


@pytest.fixture(scope="module")
def pages(tools, mserver, upstream, tmp_path_factory):
    """What pypi-simple parsed from u/dev (bases root/pypi), in both formats, plus the expectations."""
    tmp = tmp_path_factory.mktemp("ps")
    user = unique("pat")
    auth = mserver.create_user(user, "pw")
    mserver.create_index(auth, "dev", bases="root/pypi")
    name = unique("mixed-pkg")
    mserver.api("PATCH", f"/{user}/dev", json=[f"mirror_whitelist+={name}"], auth=auth)
    up_old = upstream.add_wheel(name, "0.9", requires_python=">=3.6")
    up_bad = upstream.add_wheel(name, "0.9.1", requires_python=">=3.6")
    upstream.yank(up_bad.filename, "broken build")
    up_sdist = upstream.add_sdist(name, "0.9")
    wheel = write_wheel(tmp, name, "1.0", requires_python=">=3.8", summary="ours")
    sdist = write_sdist(tmp, name, "1.0", requires_python=">=3.8")
    for f in (wheel, sdist):
        assert mserver.upload(f"{user}/dev", f, (user, "pw")).status_code == 200
    script = tmp / "parse.py"
    script.write_text(PARSE)
    env = tools("pypi-simple")
    proc = run([env.python, script, f"{mserver.url}/{user}/dev/+simple/", name])
    parsed = json.loads(proc.stdout)
    expected = {wheel.name: (sha256(wheel), None), sdist.name: (sha256(sdist), None),
                up_old.filename: (up_old.sha256, None), up_bad.filename: (up_bad.sha256, "broken build"),
                up_sdist.filename: (up_sdist.sha256, None)}
    return parsed, expected, name


@pytest.mark.compat("pypi-simple", "HTML vs JSON project page")
def test_same_files_hashes_yanked_metadata(pages):
    parsed, expected, name = pages
    html, js = parsed["html"], parsed["json"]
    assert html["packages"] == js["packages"]
    assert html["project"] == js["project"] == name
    assert html["repository_version"] and js["repository_version"]
    found = {p["filename"]: (p["digests"]["sha256"], p["yanked_reason"]) for p in js["packages"]}
    assert found == expected
    for p in js["packages"]:
        assert p["is_yanked"] == (p["yanked_reason"] is not None)
        assert p["requires_python"] == (">=3.8" if p["version"] == "1.0" else
                                        ">=3.6" if p["package_type"] == "wheel" else None)
    wheels = [p for p in js["packages"] if p["package_type"] == "wheel"]
    assert wheels and all(p["has_metadata"] for p in wheels), "wheels should carry PEP 658 metadata"
    for p in wheels:
        assert f"Version: {p['version']}" in p["metadata"]


@pytest.mark.compat("pypi-simple", "HTML vs JSON project list")
def test_same_project_list(pages):
    parsed, expected, name = pages
    assert parsed["html"]["projects"] == parsed["json"]["projects"]
    assert name in parsed["json"]["projects"]
