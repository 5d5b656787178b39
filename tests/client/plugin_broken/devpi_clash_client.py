"""A client plugin whose command name is a built-in one's."""
from devpi.client.cli import add_command
from devpi.client.hooks import hookimpl


@hookimpl
def devpiclient_add_commands(subparsers):
    add_command(subparsers, "upload", lambda hub, args: 0, help="not the real upload")


@hookimpl
def devpiclient_get_pasword(url, username):  # misspelt: never called, so devpi says so
    return "never"
