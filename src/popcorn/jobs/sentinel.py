"""A client of a Sentinel-managed Redis (`redis+sentinel://`, see `popcorn.redis_urls`).

redis-py's `Sentinel.master_for` finds the master and finds it again after a failover;
Popcorn adds no failover logic of its own, only two settings and one correction:

- retries: redis-py's master client tries a command once, where a plain URL's client
  retries for about ten seconds; these ride out a failover of a few seconds inside one
  command, and a worker's dequeue loop waits out a longer one (`popcorn.jobs.runner`);
- a connection dropped inside a command's retries is reconnected by redis-py 8 straight
  to the address it last had, never asking Sentinel (redis-py issue #3874): every retry
  went to the dead master until they ran out. Ours asks Sentinel at every connect.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from popcorn.redis_urls import parse_sentinel_url

# About 6.5 s of waits between eleven tries.
FAILOVER_RETRIES = 10
FAILOVER_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)
# A Sentinel that is down must not hold up asking the next one.
SENTINEL_TIMEOUT = 2.0
SENTINEL_CONNECT_TIMEOUT = 1.0


class MasterConnection(SentinelManagedConnection):
    """Connects to the master Sentinel names now, however the connect was reached."""

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()


def sentinel_client(
    url: str, *, socket_timeout: float, socket_connect_timeout: float
) -> redis.Redis:
    """A client of the service's current master, following it through a failover."""
    target = parse_sentinel_url(url)
    credentials: dict[str, Any] = {}
    if target.username:
        credentials["username"] = target.username
    if target.password:
        credentials["password"] = target.password
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": min(socket_timeout, SENTINEL_TIMEOUT),
        "socket_connect_timeout": min(socket_connect_timeout, SENTINEL_CONNECT_TIMEOUT),
    }
    if target.sentinel_options.get("sentinel_username"):
        sentinel_kwargs["username"] = target.sentinel_options["sentinel_username"]
    if target.sentinel_options.get("sentinel_password"):
        sentinel_kwargs["password"] = target.sentinel_options["sentinel_password"]
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(
        target.service,
        db=target.db,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        retry=Retry(FAILOVER_BACKOFF, FAILOVER_RETRIES),
        connection_class=MasterConnection,
        **credentials,
    )
