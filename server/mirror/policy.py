"""Who may make a mirror and where a mirror may connect: the server's guard against SSRF.

A mirror makes this server fetch URLs and hand what it got to anyone who may read
the index. Without a rule, anyone who can create an index could make the server
read an internal service (``http://127.0.0.1:<port>/``, a cloud metadata
address) and serve the answer. The rule (doc/mirror.md, "Security policy"):

* only root and the users named by ``--mirror-creators`` create a mirror or
  change a ``mirror_url``;
* every connection a mirror makes goes to a public address, checked on the
  address the socket connects to (after DNS, on every redirect hop), unless
  ``--mirror-allow-hosts`` names the host or its network; the host:port of
  ``--mirror-url`` is allowed implicitly, since the admin named it;
* a mirror not owned by root fetches files only from its upstream's own origin
  or hosts ``--mirror-file-hosts`` lists (root's mirrors, like ``root/pypi``,
  follow file links to any host that passes the destination check: a public
  index commonly serves its files from another host);
* an external push (``posturl``, api/push_external.py) goes to a URL a user chose, like
  a user's mirror: the same destination check holds for it, and it follows no
  redirect;
* a ``mirror_url`` that names this server is refused, and every upstream
  request carries this server's mark (``X-Devpi-Via``, mirror/via.py) so a loop the first
  check missed is answered at once with a 409 instead of holding threads.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

_HOST = re.compile(r"^[a-z0-9._:-]+$")  # a name, an IPv4 address or (from inside brackets) an IPv6 one
MAX_REMEMBERED = 4096  # answers of the destination check kept (each a few hundred bytes)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefused(OSError):
    """A mirror tried to connect where the policy does not allow (the message says why)."""


class PolicyError(ValueError):
    """An option value the policy cannot read."""


def _port_of(parts: Any) -> int | None:
    try:
        port = parts.port
    except ValueError:
        return None
    return port or {"http": 80, "https": 443}.get(parts.scheme)


def _host_entry(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as (lower-case host, port or None)."""
    parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError:
        raise PolicyError(f"not a host[:port]: {text!r}") from None
    host = (parts.hostname or "").lower()
    if not _HOST.match(host) or parts.username is not None or parts.path or parts.query or parts.fragment:
        raise PolicyError(f"not a host[:port]: {text!r}")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise PolicyError(f"not a host[:port]: {text!r}") from None
    return host, port


def _split(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def address_kind(ip: IPAddress) -> str | None:
    """Why an address is not a public destination (None when it is one)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, test in (("loopback", ip.is_loopback), ("unspecified", ip.is_unspecified),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved)):
        if test:
            return kind
    return None if ip.is_global else "non-public"


@dataclass(frozen=True)
class MirrorPolicy:
    creators: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[tuple[str, int | None]] = frozenset()  # port None: any port
    file_hosts: frozenset[tuple[str, int | None]] = frozenset()
    implicit: frozenset[tuple[str, int | None]] = field(default=frozenset())  # --mirror-url's host:port
    _answers: dict[tuple[str, int | None, str], str | None] = field(default_factory=dict, compare=False,
                                                                      repr=False)

    @classmethod
    def from_options(cls, creators: str | Iterable[str] | None = None,
                     allow_hosts: str | Iterable[str] | None = None,
                     file_hosts: str | Iterable[str] | None = None,
                     mirror_url: str | None = None) -> MirrorPolicy:
        networks: list[IPNetwork] = []
        hosts: set[tuple[str, int | None]] = set()
        for entry in _split(allow_hosts):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(_host_entry(entry))
        implicit: set[tuple[str, int | None]] = set()
        if mirror_url and mirror_url.startswith(("http://", "https://")):
            parts = urlsplit(mirror_url)
            if parts.hostname:
                implicit.add((parts.hostname.lower(), _port_of(parts)))
        return cls(frozenset(_split(creators)), tuple(networks), frozenset(hosts),
                   frozenset(_host_entry(e) for e in _split(file_hosts)), frozenset(implicit))

    # -- who ---------------------------------------------------------------------------
    def may_create(self, user: str) -> bool:
        return user == "root" or user in self.creators

    # -- where ---------------------------------------------------------------------------
    def _named(self, names: Iterable[tuple[str, int | None]], host: str, port: int | None) -> bool:
        host = host.lower().strip("[]")
        return (host, port) in names or (host, None) in names

    def refusal(self, host: str, port: int | None, ip: str) -> str | None:
        """Why connecting to ``ip`` (found for ``host``) is not allowed, or None if it is.
        Remembered (a few thousand answers): a cold install opens many connections."""
        key = (host, port, ip)
        try:
            return self._answers[key]
        except KeyError:
            pass
        answer = self._refusal(host, port, ip)
        if len(self._answers) >= MAX_REMEMBERED:
            self._answers.clear()
        self._answers[key] = answer
        return answer

    def _refusal(self, host: str, port: int | None, ip: str) -> str | None:
        if self._named(self.allowed_hosts, host, port) or self._named(self.implicit, host, port):
            return None
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return f"{host} resolved to {ip!r}, which is no IP address"
        if self._named(self.allowed_hosts, str(address), port):
            return None
        if any(address in net for net in self.allowed_networks):
            return None
        kind = address_kind(address)
        if kind is None:
            return None
        shown = host if host == str(address) else f"{host} ({address})"
        return (f"{shown} is a {kind} address, which mirrors and pushes may not reach "
                "(the server's --mirror-allow-hosts can allow it)")

    def check(self, host: str, port: int | None, ip: str) -> None:
        """Raise DestinationRefused unless the policy allows connecting to ``ip``."""
        reason = self.refusal(host, port, ip)
        if reason is not None:
            raise DestinationRefused(reason)

    def check_url(self, url: str) -> None:
        """Every address the URL's host resolves to must be allowed. A host that does not
        resolve here is let through: the connection is checked again when it is made (or,
        through a proxy, left to the proxy, which resolves it)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return
        port = _port_of(parts)
        for ip in resolve(parts.hostname, port):
            self.check(parts.hostname, port, ip)

    # -- which file links ------------------------------------------------------------------
    def file_link_allowed(self, owner: str, mirror_url: str, link_url: str) -> bool:
        """A mirror owned by root follows any link (the destination check still applies);
        another user's only to its upstream's origin or the hosts the admin listed."""
        if owner == "root":
            return True
        up, link = urlsplit(mirror_url), urlsplit(link_url)
        if link.scheme == up.scheme and (link.hostname or "") == (up.hostname or "") \
                and _port_of(link) == _port_of(up):
            return True
        return link.scheme in ("http", "https") and bool(link.hostname) and \
            self._named(self.file_hosts, link.hostname or "", _port_of(link))


def resolve(host: str, port: int | None) -> list[str]:
    """The addresses ``host`` resolves to (empty when it does not)."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def _is_local_address(ip: str) -> bool:
    """Can a socket be bound to it, i.e. is it an address of this machine."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((ip.split("%", 1)[0], 0))
    except OSError:
        return False
    return True


def names_this_server(url: str, listen_host: str, listen_port: int, other_urls: Iterable[str | None]) -> bool:
    """Does ``url`` reach this server: its outside URL or the host the client used
    (``other_urls``), or its listening address and port, however the host is spelled
    (a name resolving to it, any local address when listening on all of them)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host, port = parts.hostname.lower(), _port_of(parts)
    for other in other_urls:
        if not other:
            continue
        theirs = urlsplit(other if "://" in other else f"{parts.scheme}://{other}")
        if (theirs.hostname or "").lower() == host and _port_of(theirs) == port:
            return True
    if port != listen_port:
        return False
    wildcard = listen_host in ("", "0.0.0.0", "::")
    listening = set() if wildcard else {_address(ip) for ip in resolve(listen_host, listen_port)}
    for ip in resolve(host, port):
        address = _address(ip)
        if address in listening or address.is_unspecified or (wildcard and _is_local_address(str(address))):
            return True
    return False


def _address(ip: str) -> IPAddress:
    """The address, an IPv4-mapped IPv6 one (``::ffff:127.0.0.1``) as the IPv4 it is."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def policy_of(core: Any) -> MirrorPolicy:
    """The server's policy, made once from its options (see main.py)."""
    policy = core.config.extra.get("mirror_policy")
    if policy is None:
        cfg = core.config
        policy = MirrorPolicy.from_options(cfg.mirror_creators, cfg.mirror_allow_hosts, cfg.mirror_file_hosts,
                                           core.mirror_url_default())
        cfg.extra["mirror_policy"] = policy
    return policy
