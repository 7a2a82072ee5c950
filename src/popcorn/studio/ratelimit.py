"""Per-token rate limits on the studio API, as ShotGrid has them for scripts.

A token bucket per API token in Redis (shared by every server process): it holds
`studio_rate_burst` requests (200) and refills at `studio_rate_per_s`
(50 a second; 0 turns the limit off). A request over the limit is refused with 429,
the error envelope (`rate_limited`, the wait in `details.retry_after_s`) and a
`Retry-After` header in whole seconds, which `popcorn_studio` (and shotgun_api3-style
retry loops) honour. Every answer carries `X-RateLimit-Limit` and
`X-RateLimit-Remaining`. When Redis cannot answer, requests pass: the limit protects
the server, it must not take the API down with it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from popcorn.config import get_settings

log = logging.getLogger("popcorn.studio")

KEY = "popcorn:studio:rate:{token}:{rate:g}:{burst}"

# Atomic take-one from a bucket: (allowed, tokens left, seconds until one is back).
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local data = redis.call('HMGET', KEYS[1], 't', 'v')
local last = tonumber(data[1]) or now
local tokens = tonumber(data[2]) or burst
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', tostring(now), 'v', tostring(tokens))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(wait)}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: float


def settings() -> tuple[float, int]:
    """(requests per second, burst): settings `studio_rate_per_s` and `studio_rate_burst`."""
    current = get_settings()
    return current.studio_rate_per_s, current.studio_rate_burst


def take(token_id: int | None) -> Verdict | None:
    """Spend one request of the token's bucket; None when limits are off or unknowable."""
    rate, burst = settings()
    if rate <= 0 or token_id is None or not math.isfinite(rate):
        return None
    from popcorn import jobs

    try:
        allowed, left, wait = jobs.get_redis().eval(
            TAKE, 1, KEY.format(token=token_id, rate=rate, burst=burst), rate, burst, time.time()
        )
    except Exception as exc:  # Redis down must not take the API down
        log.warning("studio rate limit skipped: %s", exc)
        return None
    return Verdict(
        allowed=bool(int(allowed)),
        limit=burst,
        remaining=max(0, int(float(left))),
        retry_after_s=float(wait),
    )
