"""Redis URLs: plain ones for redis-py, and `redis+sentinel://` for a Sentinel-managed Redis.

redis-py finds and follows the master through Sentinel (`Sentinel.master_for`) but has no
URL form for it, and Popcorn takes one setting per installation. The scheme is the one
RedisVL, Prefect and the Redis-Sentinel-Url package use:

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
        [?sentinel_password=...&sentinel_username=...]

The credentials before `@` are the Redis servers' (master and replicas); the Sentinels'
own, when they require any, are the `sentinel_*` options. Sentinel ports default to 26379.
The client itself is built in `popcorn.jobs.sentinel` (this module imports no redis: every
process reads its settings, few talk to Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username")
MASK = "****"
MASKED_OPTIONS = ("password", "sentinel_password")  # redis-py reads ?password= too


@dataclass(frozen=True)
class SentinelUrl:
    """What a `redis+sentinel://` URL says."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_options: dict[str, str] = field(default_factory=dict)


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() == SENTINEL_SCHEME


def check_redis_url(url: str) -> str:
    """The URL unchanged if Popcorn can connect with it; else ValueError, one line."""
    scheme, sep, _ = url.partition("://")
    if not sep or (scheme.lower() not in PLAIN_SCHEMES and not is_sentinel_url(url)):
        known = ", ".join(f"{s}://" for s in (*PLAIN_SCHEMES, SENTINEL_SCHEME))
        raise ValueError(f"Redis URL must start with one of {known}")
    if is_sentinel_url(url):
        parse_sentinel_url(url)
    return url


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read a `redis+sentinel://` URL; ValueError naming the part that is wrong."""
    if not is_sentinel_url(url):
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
    sentinels = [_host_port(part) for part in hosts.split(",")] if hosts else []
    if not sentinels:
        raise ValueError("Sentinel URL names no Sentinel host (host:port after //)")
    parts = [unquote(p) for p in path.split("/")] if path else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts or not parts[0]:
        raise ValueError("Sentinel URL names no service (the master's name, e.g. /mymaster/0)")
    if len(parts) > 2:
        raise ValueError(f"Sentinel URL path has {len(parts)} parts; expected /service[/db]")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"Sentinel URL database must be a number, not {parts[1]!r}")
        db = int(parts[1])
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in SENTINEL_OPTIONS:
            known = ", ".join(SENTINEL_OPTIONS)
            raise ValueError(f"Sentinel URL option {key!r} is not supported (known: {known})")
        options[key] = value
    return SentinelUrl(sentinels, parts[0], db, username, password, options)


def _host_port(part: str) -> tuple[str, int]:
    if part.startswith("["):  # [IPv6]:port
        host, bracket, port_text = part[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise ValueError(f"Sentinel URL host {part!r} is not [address]:port")
        port_text = port_text[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise ValueError(f"Sentinel URL has an empty host in {part!r}")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"Sentinel URL port {port_text!r} of {host} is not a port number")
    return host, int(port_text)


def mask_redis_url(url: str) -> str:
    """The URL with its passwords (the servers' and the Sentinels') replaced by stars."""
    head, sep, query = url.partition("?")
    head = _mask_userinfo(head)
    if not sep:
        return head
    pairs = [
        (key, MASK if key in MASKED_OPTIONS and value else value)
        for key, value in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{head}?{urlencode(pairs, safe='*', quote_via=quote)}"


def _mask_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{MASK}@{hosts}{slash}{path}"
