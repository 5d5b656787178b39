"""A tiny client plugin, as a third party writes one (loaded through its entry point).

It adds ``devpi hello NAME`` the new way, ``devpi hello-classic`` the original
devpi-client's way, ``devpi hello-boom`` (a command that crashes), and knows
one password: alice's at the server named by $HELLO_PLUGIN_URL. For bob it
raises when $HELLO_PLUGIN_FAIL is set.
"""
import os

from devpi.client.cli import add_command
from devpi.client.hooks import hookimpl


def run_hello(hub, args):
    hub.info(f"hello {args.name}, the server in use is {hub.state.root_url}")
    return 0


def run_boom(hub, args):
    raise RuntimeError("the plugin's command broke")


@hookimpl
def devpiclient_add_commands(subparsers):
    p = add_command(subparsers, "hello", run_hello, help="greet NAME (a plugin command)")
    p.add_argument("name")
    add_command(subparsers, "hello-boom", run_boom, help="a plugin command that crashes")


def classic_handler(hub, args):
    """greet, the original devpi-client's way"""
    hub.info(f"classic hello, loud={args.loud}")


def classic_arguments(parser):
    parser.add_argument("--loud", action="store_true")


@hookimpl
def devpiclient_subcommands():
    return [(classic_arguments, "hello-classic", "devpi_hello_client:classic_handler")]


@hookimpl
def devpiclient_get_password(url, username):
    if username == "bob" and os.environ.get("HELLO_PLUGIN_FAIL"):
        raise OSError("the keyring is locked")
    if username == "alice" and url == os.environ.get("HELLO_PLUGIN_URL"):
        return "alicepw"
    return None
