"""Which peers may speak for the client: the ``--trusted-proxy`` rule.

A reverse proxy (nginx in front of devpi) tells us the URL clients use
(``X-Outside-Url``, ``X-Forwarded-Proto``) and who the client is
(``X-Forwarded-For``). Anyone can send those headers, so they are believed
only from the addresses the admin names; from anyone else they are ignored:
absolute URLs then come from ``--outside-url`` or the ``Host`` header, and the
client is the TCP peer (``REMOTE_ADDR``), which is what login throttling
counts by. The default trusts loopback, as a proxy on the same host is the
usual deployment and anything that can connect from loopback already runs on
this machine.
"""
from __future__ import annotations

import functools
import ipaddress
import re

DEFAULT = "loopback"
_LOOPBACK = ("127.0.0.0/8", "::1/128")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse(spec: str | None) -> tuple[Network, ...]:
    """``loopback`` (default), ``none``, or a comma-separated list of addresses and CIDRs
    (``loopback`` may be one of them). Raises ValueError on anything else."""
    networks: list[Network] = []
    for item in (spec if spec is not None else DEFAULT).split(","):
        item = item.strip().lower()
        if item in ("", "none"):
            continue
        if item == "loopback":
            networks.extend(ipaddress.ip_network(n) for n in _LOOPBACK)
        else:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def parse_allow(spec: str) -> tuple[Network, ...]:
    """An allow list of clients (``--metrics-allow``): what :func:`parse` reads, or ``any``."""
    if "any" in (item.strip().lower() for item in spec.split(",")):
        return (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    return parse(spec)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    def __init__(self, spec: str | None = DEFAULT):
        self.networks = parse(spec)
        self.trusts = functools.lru_cache(maxsize=1024)(self._trusts)

    def _trusts(self, peer: str) -> bool:
        addr = _address(peer)
        return addr is not None and any(addr in net for net in self.networks)

    def from_proxy(self, environ: dict) -> bool:
        """Whether this request's TCP peer is a trusted proxy (its headers are believed)."""
        return bool(self.networks) and self.trusts(environ.get("REMOTE_ADDR") or "")

    def client_addr(self, environ: dict) -> str:
        """The client's address: the peer, or behind trusted proxies the right-most
        ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries left of it
        were written by the client and prove nothing)."""
        addr = environ.get("REMOTE_ADDR") or "-"
        if not self.from_proxy(environ):
            return addr
        hops = [h.strip() for h in (environ.get("HTTP_X_FORWARDED_FOR") or "").split(",") if h.strip()]
        for hop in reversed(hops[-32:]):
            if _address(hop) is None:
                return addr  # garbage in the chain: count the proxy itself
            if not self.trusts(hop):
                return hop
            addr = hop
        return addr


def valid_host(value: str) -> bool:
    """A ``Host`` header we may write into an absolute URL: a name or address and an
    optional port, nothing that could end the authority part (``/``, ``@``, spaces)."""
    return _HOST.fullmatch(value) is not None
