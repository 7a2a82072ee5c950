"""Where the platform may call out to: one check before every outbound request.

Webhooks, Prometheus pulls and object-store endpoints are URLs that a user
types, so without a check any operator could make the platform reach the
cloud metadata service, a database on loopback, or a host inside the
network, and read the answer back. An admin lists the allowed targets in
`POPCORN_OUTBOUND_ALLOW` (hosts, `host:port`, CIDR blocks or URL prefixes);
everything else is refused before a connection is made. Loopback,
link-local and metadata addresses are refused unless an entry names them.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from popcorn.errors import Forbidden, InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Target:
    """A checked URL: its scheme, host, port and the addresses it resolved to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    hosts: frozenset[str]
    host_ports: frozenset[tuple[str, int]]
    networks: tuple[Network, ...]
    prefixes: tuple[str, ...]

    def allows(self, target: Target, address: Address) -> bool:
        if target.url.startswith(self.prefixes) if self.prefixes else False:
            return True
        if target.host in self.hosts or (target.host, target.port) in self.host_ports:
            return True
        return any(address in net for net in self.networks)

    def names(self, target: Target) -> bool:
        """Does an entry name this target explicitly (not just by a wide network)?"""
        return (
            target.host in self.hosts
            or (target.host, target.port) in self.host_ports
            or bool(self.prefixes and target.url.startswith(self.prefixes))
        )


def parse_rules(spec: str) -> Rules:
    hosts: set[str] = set()
    host_ports: set[tuple[str, int]] = set()
    networks: list[Network] = []
    prefixes: list[str] = []
    for raw in filter(None, (part.strip() for part in spec.split(","))):
        if "://" in raw:
            prefixes.append(raw)
            continue
        try:
            networks.append(ipaddress.ip_network(raw, strict=False))
            continue
        except ValueError:
            pass
        host, sep, port = raw.rpartition(":")
        if sep and port.isascii() and port.isdigit() and "]" not in port:
            host_ports.add((host.strip("[]").lower(), int(port)))
        else:
            hosts.add(raw.strip("[]").lower())
    return Rules(frozenset(hosts), frozenset(host_ports), tuple(networks), tuple(prefixes))


@lru_cache(maxsize=8)
def _rules(spec: str) -> Rules:
    return parse_rules(spec)


def current_rules() -> Rules:
    from popcorn.config import get_settings

    return _rules(get_settings().outbound_allow)


def _special(address: Address) -> bool:
    """Addresses that are never a target by accident: loopback, link-local, metadata."""
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or any(address in net for net in METADATA)
    )


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"cannot resolve host {host!r}: {exc}", details={"host": host}) from None
    return tuple(sorted({str(info[4][0]) for info in infos}))


def check_url(url: str, *, purpose: str, rules: Rules | None = None) -> Target:
    """The target of `url` if an admin allowed it for outbound calls, else a 403.

    Every address the host resolves to must be allowed, so a name that resolves to
    both a public and a loopback address is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise InvalidInput(
            f"{purpose}: {url!r} is not an http(s) URL", details={"url": url, "purpose": purpose}
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput(
            f"{purpose}: {url!r} has an invalid port", details={"url": url}
        ) from None
    host = parts.hostname.lower()
    target = Target(url, parts.scheme, host, port, _resolve(host, port))
    active = rules or current_rules()
    for raw in target.addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
        if not active.allows(target, address) or (
            _special(address) and not _named(active, target, address)
        ):
            raise Forbidden(
                f"{purpose}: outbound calls to {host}:{port} are not allowed "
                "(an admin lists allowed targets in POPCORN_OUTBOUND_ALLOW)",
                code="outbound_refused",
                details={"url": url, "host": host, "port": port, "purpose": purpose},
            )
    return target


def _named(rules: Rules, target: Target, address: Address) -> bool:
    """A special address passes only when an entry names its host or its own network."""
    if rules.names(target):
        return True
    return any(address in net and not _covers_everything(net) for net in rules.networks)


def _covers_everything(net: Network) -> bool:
    return net.prefixlen == 0
