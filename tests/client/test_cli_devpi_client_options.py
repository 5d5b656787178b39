"""What the options taken over from devpi-client 7.3 do (test_cli_option_parity.py checks they parse).

Each test drives the real ``devpi`` command against the real server and checks the effect:
files on the index, config files written, state kept where devpi-client keeps it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests
from clienthelpers import write_project
from support.dists import write_sdist, write_wheel
from tlsproxy import ClientCertProxy


def release_files(server, index: str, name: str, version: str = "1.0") -> list[str]:
    r = requests.get(f"{server.url}/{index}/{name}/{version}", headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    return sorted(lk["href"].rsplit("/", 1)[1] for lk in r.json()["result"]["+links"] if lk["rel"] == "releasefile")


# -- devpi use ------------------------------------------------------------------------------------
def test_use_urls_shows_the_servers_endpoints(alice, devpi_server):
    api = requests.get(f"{devpi_server.url}/alice/dev/+api", timeout=30).json()["result"]
    out = alice.ok("use", "--urls")
    shown = {k.strip(): v.strip() for k, _, v in (line.partition(": ") for line in out.splitlines()[1:4])}
    assert shown == {"login": api["login"], "pypisubmit": api["pypisubmit"], "simpleindex": api["simpleindex"]}
    assert "pypisubmit" not in alice.ok("use")


def test_use_list_of_one_user(alice, make_cli, devpi_server):
    bob = make_cli("bob")
    bob.ok("use", devpi_server.url)
    bob.ok("user", "-c", "bob", "password=bobpw")
    bob.ok("login", "bob", "--password", "bobpw")
    bob.ok("index", "-c", "stage")
    everyone = alice.ok("use", "-l")
    assert "alice/dev" in everyone and "bob/stage" in everyone and "root/pypi" in everyone
    only_bob = alice.ok("use", "-l", "-u", "bob")
    assert "bob/stage" in only_bob and "alice/dev" not in only_bob and "root/pypi" not in only_bob
    assert "nosuchuser" in alice.fail("use", "-l", "--user", "nosuchuser")
    # without -l it says whether we are that user
    assert "(not logged in as bob, but as alice)" in alice.ok("use", "-u", "bob")


def test_use_local_keeps_the_index_in_the_virtualenv(alice, devpi_server, tmp_path):
    assert "active virtualenv" in alice.fail("use", "--local")
    venv = {"VIRTUAL_ENV": str(tmp_path / "venv")}
    (tmp_path / "venv").mkdir()
    out = alice.ok("use", "--local", env=venv)
    local = tmp_path / "venv" / "devpi.json"
    assert f"created local configuration at {local}" in out
    assert f"current devpi index: {devpi_server.url}/alice/dev" in out
    alice.ok("use", "root/pypi", env=venv)  # changes the venv's state only
    assert f"current devpi index: {devpi_server.url}/root/pypi" in alice.ok("use", env=venv)
    assert f"current devpi index: {devpi_server.url}/alice/dev" in alice.ok("use")
    assert "root/pypi" in local.read_text()
    assert "alice/dev" in (alice.clientdir / "current.json").read_text()


def test_use_pip_set_trusted(alice, devpi_server, tmp_path):
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    pipconf = home / ".config" / "pip" / "pip.conf"
    alice.ok("use", "--set-cfg", env=env)  # auto: 127.0.0.1 over http needs no trusted-host
    assert "trusted-host" not in pipconf.read_text()
    out = alice.ok("use", "--set-cfg", "-t", "yes", env=env)
    assert "pip: wrote trusted-host = 127.0.0.1" in out
    assert "trusted-host = 127.0.0.1" in pipconf.read_text()
    pip_sees = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              env={**alice.env, **env}).stdout
    assert "global.trusted-host='127.0.0.1'" in pip_sees
    alice.ok("use", "--set-cfg", "--pip-set-trusted", "no", env=env)
    text = pipconf.read_text()
    assert "trusted-host" not in text and f"index-url = {devpi_server.url}/alice/dev/+simple/" in text
    alice.fail("use", "-t", "maybe", rc=2)


def test_use_client_cert_is_remembered_per_server(alice, devpi_server, tmp_path):
    assert "does not exist" in alice.fail("use", "--client-cert", str(tmp_path / "missing.pem"))
    pem = tmp_path / "me.pem"
    pem.write_text("not checked before TLS needs it\n")
    alice.ok("use", "--client-cert", str(pem))
    assert f"client certificate: {pem}" in alice.ok("use")
    out = alice.ok("use", "--client-cert", "")
    assert f"forgot the client certificate for {devpi_server.url}" in out
    assert "client certificate" not in alice.ok("use")


def test_use_client_cert_reaches_a_server_that_demands_one(make_cli, new_server, tmp_path):
    with ClientCertProxy(tmp_path / "tls") as proxy:
        server = new_server(args=("--outside-url", proxy.url))
        proxy.start(server.port)
        cli = make_cli("tls", REQUESTS_CA_BUNDLE=str(proxy.ca_pem))
        err = cli.fail("use", proxy.url)
        assert f"TLS with the server at {proxy.url} failed" in err and proxy.refused == 1
        out = cli.ok("use", "--client-cert", str(proxy.client_pem), f"{proxy.url}/root/pypi")
        assert f"current devpi index: {proxy.url}/root/pypi" in out
        assert f"client certificate: {proxy.client_pem}" in out
        assert "root/pypi" in cli.ok("use", "-l")  # remembered for later commands
        cli.ok("login", "root", "--password", "root")
        cli.ok("index", "-c", "certs")
        cli.ok("use", "--client-cert", "")
        assert "TLS with the server" in cli.fail("use", "-l")
        assert proxy.refused == 2


# -- devpi upload ----------------------------------------------------------------------------------
def test_upload_formats_maps_to_sdist_and_wheel(alice, devpi_server, tmp_path):
    proj = write_project(tmp_path, "fmtpkg")
    r = alice.run("upload", "--no-isolation", "--formats", "sdist.tgz", cwd=proj)
    assert r.rc == 0, r.err
    assert "formats sdist.tgz is deprecated (as in devpi-client): use --sdist" in r.err
    assert release_files(devpi_server, "alice/dev", "fmtpkg") == ["fmtpkg-1.0.tar.gz"]
    err = alice.fail("upload", "--no-isolation", "--formats", "bdist_egg,sdist.zip", cwd=proj)
    assert "bdist_egg, sdist.zip cannot be built" in err


def test_upload_reads_tool_devpi_upload_from_pyproject(alice, devpi_server, tmp_path):
    proj = write_project(tmp_path, "cfgpkg")
    pyproject = proj / "pyproject.toml"
    base = pyproject.read_text()
    pyproject.write_text(base + "\n[tool.devpi.upload]\nwheel = true\nno-vcs = true\n")
    out = alice.ok("upload", "--no-isolation", cwd=proj)
    assert "using pyproject.toml [tool.devpi.upload]: wheel=True, no-vcs=True" in out
    assert release_files(devpi_server, "alice/dev", "cfgpkg") == ["cfgpkg-1.0-py3-none-any.whl"]

    pyproject.write_text(base + '\n[tool.devpi.upload]\nsdist = "yes"\n')
    assert "sdist = 'yes' is not a boolean" in alice.fail("upload", "--no-isolation", cwd=proj)
    pyproject.write_text(base + '\n[tool.devpi.upload]\nformats = "sdist"\n')
    assert "'formats' is not supported there" in alice.fail("upload", "--no-isolation", cwd=proj)
    pyproject.write_text(base + "\n[tool.devpi.upload]\nsdist = true\n")
    (proj / "setup.cfg").write_text("[devpi:upload]\nwheel = 1\n")
    assert "keep one" in alice.fail("upload", "--no-isolation", cwd=proj)


def test_upload_reads_devpi_upload_from_setup_cfg(alice, devpi_server, tmp_path):
    proj = write_project(tmp_path, "cfgpkg2")
    (proj / "setup.cfg").write_text("[devpi:upload]\nformats = sdist\n")
    r = alice.run("upload", "--no-isolation", cwd=proj)
    assert r.rc == 0, r.err
    assert "using setup.cfg [devpi:upload]: formats=sdist" in r.out
    assert release_files(devpi_server, "alice/dev", "cfgpkg2") == ["cfgpkg2-1.0.tar.gz"]


def test_upload_with_another_python(alice, devpi_server, tmp_path):
    proj = write_project(tmp_path, "pypkg")
    err = alice.fail("upload", "-p", str(tmp_path / "nopython"), cwd=proj)
    assert f"--python {tmp_path / 'nopython'}: no such interpreter" in err
    bare = tmp_path / "bare"  # a venv without the build package
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    assert "the 'build' package is not installed for" in alice.fail("upload", "--python", str(bare / "bin" / "python"),
                                                                  cwd=proj)
    out = alice.ok("upload", "--no-isolation", "--sdist", "--setupdir-only", "-p", sys.executable, cwd=proj)
    assert f"(without isolation, {Path(sys.executable).absolute()})" in out
    assert release_files(devpi_server, "alice/dev", "pypkg") == ["pypkg-1.0.tar.gz"]


def test_upload_from_dir_flag_searches_subdirectories(alice, devpi_server, tmp_path):
    dist = tmp_path / "dist"
    (dist / "a" / "b").mkdir(parents=True)
    write_wheel(dist / "a" / "b", "deeppkg", "1.0")
    write_sdist(dist, "deeppkg", "1.0")
    write_sdist(dist, "deeppkg", "0.9")
    out = alice.ok("upload", "--from-dir", "--only-latest", str(dist))
    assert "uploaded deeppkg-1.0-py3-none-any.whl" in out and "uploaded deeppkg-1.0.tar.gz" in out
    assert "0.9" not in out
    assert release_files(devpi_server, "alice/dev", "deeppkg") == ["deeppkg-1.0-py3-none-any.whl",
                                                                    "deeppkg-1.0.tar.gz"]


# -- devpi install / test ---------------------------------------------------------------------------
def test_install_r_flag_reads_every_positional_as_requirements(alice, tmp_path):
    for name in ("reqa", "reqb"):
        alice.ok("upload", str(write_wheel(tmp_path, name, "1.0")))
    (tmp_path / "a.txt").write_text("reqa\n")
    (tmp_path / "b.txt").write_text("reqb\n")
    venv = tmp_path / "venv"  # pip of the base interpreter installs into it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    out = alice.ok("install", "--venv", str(venv), "-r", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    assert f"-r {tmp_path / 'a.txt'} -r {tmp_path / 'b.txt'}" in out
    site = next(venv.glob("lib/python3*/site-packages"))
    assert (site / "reqa").is_dir() and (site / "reqb").is_dir()


def test_test_list_select_and_several_projects(alice, devpi_server, tmp_path):
    for name in ("lsta", "lstb"):
        alice.ok("upload", str(write_sdist(tmp_path, name, "1.0", extra_files={"tox.ini": "[testenv]\n"})),
                 str(write_wheel(tmp_path, name, "1.0")))
    out = alice.ok("test", "--list", "lsta", "lstb")
    lines = [line for line in out.splitlines() if line.startswith(("would test: ", "tox config: "))]
    assert [line.split("/")[-1] for line in lines if line.startswith("would")] == ["lsta-1.0.tar.gz", "lstb-1.0.tar.gz"]
    assert "tox config: found by tox in lsta-1.0.tar.gz" in lines
    out = alice.ok("test", "-l", "-s", r"\.whl$", "lsta")
    assert "would test: " in out and out.count("lsta-1.0-py3-none-any.whl") == 1
    r = requests.get(f"{devpi_server.url}/alice/dev/lsta/1.0/+testruns", headers={"Accept": "application/json"},
                     timeout=30)
    assert r.json()["result"] == []  # --list runs nothing


def test_test_toxargs_go_to_tox(alice, tmp_path):
    alice.ok("upload", str(write_sdist(tmp_path, "toxargpkg", "1.0", extra_files={"tox.ini": "[testenv]\n"})))
    r = alice.run("test", "--toxargs=--version", "--no-upload", "toxargpkg")
    assert r.rc == 0, r.err
    command = next(line for line in r.out.splitlines() if line.startswith("-->"))
    assert command.endswith(" --version")
    assert "tox" in r.out.split(command, 1)[1] and " from " in r.out.split(command, 1)[1]  # tox's version line
