"""Client plugins: a tiny plugin dist (tests/client/plugin_dist) found through its entry point.

The plugin's folder holds its module and a ``*.dist-info`` with the
``devpi_client`` entry point; putting it on PYTHONPATH of the ``devpi``
subprocess installs it as far as importlib.metadata can tell.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "plugin_dist"
BROKEN = HERE / "plugin_broken"


def pythonpath(*dirs: Path) -> str:
    return os.pathsep.join([*(str(d) for d in dirs), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture
def plugged(make_cli, devpi_server):
    cli = make_cli("plugged", PYTHONPATH=pythonpath(PLUGIN), HELLO_PLUGIN_URL=devpi_server.url + "/")
    cli.ok("use", devpi_server.url)
    return cli


def test_plugin_adds_commands(plugged, devpi_server):
    assert "greet NAME (a plugin command)" in plugged.ok("--help")
    assert plugged.ok("hello", "world").strip() == f"hello world, the server in use is {devpi_server.url}"
    assert "greet NAME" in plugged.ok("hello", "--help")
    assert plugged.ok("hello-classic", "--loud").strip() == "classic hello, loud=True"
    assert "greet, the original devpi-client's way" in plugged.ok("--help")


def test_plugin_command_without_the_plugin_is_unknown(devpi, devpi_server):
    line = devpi.fail("hello", "world", rc=2)
    assert "invalid choice: 'hello'" in line


def test_plugin_command_error_is_one_line_naming_the_plugin(plugged):
    line = plugged.fail("hello-boom", rc=1)
    assert line == ("devpi: error: client plugin 'hello' failed in 'devpi hello-boom': "
                    "RuntimeError: the plugin's command broke (run with --debug for a traceback)")
    r = plugged.run("hello-boom", "--debug")
    assert r.rc == 1 and "Traceback" in r.err  # asked for


def test_plugin_provides_the_password(plugged, devpi_server):
    plugged.ok("user", "-c", "alice", "password=alicepw")
    out = plugged.ok("login", "alice", input="")  # no password given, none on stdin
    assert "using the password of alice from client plugin 'hello'" in out
    assert "logged in 'alice'" in out
    assert "alice" in plugged.ok("use")

    # the plugin has none for bob: the prompt (here stdin) as before
    plugged.ok("user", "-c", "bob", "password=bobpw")
    out = plugged.ok("login", "bob", input="bobpw\n")
    assert "client plugin" not in out and "logged in 'bob'" in out

    # --password wins over the plugin: a wrong one fails although the plugin knows the right one
    line = plugged.fail("login", "alice", "--password", "wrong")
    assert line.startswith("devpi: error: login failed")


def test_plugin_password_error_is_one_line_naming_the_plugin(plugged, devpi_server):
    line = plugged.fail("login", "bob", env={"HELLO_PLUGIN_FAIL": "1"}, input="bobpw\n")
    assert line == (f"devpi: error: client plugin 'hello' failed to look up the password of bob at "
                    f"{devpi_server.url}/: OSError: the keyring is locked")


def test_version_lists_plugins(plugged):
    out = plugged.ok("--version")
    assert "client plugin hello: devpi-hello-client 1.0" in out.splitlines()


def test_broken_plugin_is_one_warning_and_the_rest_works(make_cli, devpi_server):
    cli = make_cli("broken", PYTHONPATH=pythonpath(BROKEN, PLUGIN))
    cli.ok("use", devpi_server.url)
    r = cli.run("--version")
    assert r.rc == 0 and "Traceback" not in r.err
    assert r.err_lines == ["devpi: warning: client plugin 'broken' (devpi-broken-client 0.1) not loaded: "
                           "ModuleNotFoundError: No module named 'devpi_no_such_dependency'",
                           "devpi: warning: client plugin 'clash' (devpi-broken-client 0.1) implements unknown "
                           "hooks: devpiclient_get_pasword",
                           "devpi: warning: client plugin 'clash' could not add its commands: "
                           "ArgumentError: argument COMMAND: conflicting subparser: upload"]
    assert "client plugin hello: devpi-hello-client 1.0" in r.out
    assert "client plugin clash: devpi-broken-client 0.1" in r.out
    assert "hello world" in cli.ok("hello", "world")
    # a built-in command loads no plugin at all, so a broken one costs it nothing
    r = cli.run("use")
    assert r.rc == 0 and r.err_lines == []
    assert "not the real upload" not in cli.ok("upload", "--help")
