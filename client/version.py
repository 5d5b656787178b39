"""``devpi --version``: client version, plus the server's when one is in use."""
from __future__ import annotations

from devpi.client.errors import DevpiError
from devpi.client.hub import Hub, client_version


def show_version(hub: Hub) -> int:
    """Print versions; an unreachable server is a warning, not a failure (scripts call --version)."""
    from devpi.client.plugins import get_plugins

    hub.info(f"devpi-client {client_version()}")
    for line in get_plugins().describe():
        hub.info(line)
    root = hub.state.root_url
    if not root:
        return 0
    try:
        reply = hub.request("GET", root + "/+status", check=False, timeout=(5, 15))
    except DevpiError as e:
        hub.warn(e.message)
        return 0
    result = reply.result if isinstance(reply.result, dict) else {}
    info = result.get("versioninfo") or {}
    if reply.status_code != 200 or not info:
        hub.warn(f"could not get the server version from {root}/+status: {reply.error_text()}")
        return 0
    hub.info(f"current server: {root}")
    for name, ver in sorted(info.items()):
        hub.info(f"{name} {ver}")
    return 0
