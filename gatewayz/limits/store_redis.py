"""Rate limits in Redis, enforced once across every worker process and instance.

Each consume, refund or adjust is one EVALSHA of one Lua script, atomic on the server. A key's state is its
GCRA theoretical arrival time (a float, seconds) kept with an expiry of at least the window, so idle keys
vanish by themselves. Time is the caller's `now` when given (tests), else the Redis server's TIME, so
machines with skewed clocks agree. The decision arithmetic is `limiter.decide`, shared with memory.

When Redis fails (errors, refused connections, a call slower than `timeout_s`), that call is decided by the
in-process limiter instead, and Redis is left alone for `down_backoff_s` so an outage adds no latency to each
request; a warning is logged at most once per `warn_every_s`. Requests are never refused, nor raised on,
because Redis is down."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gatewayz.limits.limiter import Decision, Limit, MemoryLimiter, check_cost, decide, fits, tolerance

log = logging.getLogger("gatewayz.limits")

# KEYS[1]: the key. ARGV: op ('consume' | 'shift' | 'peek'), interval_s, window_s, units, tolerance_s,
# now ('' = the server's TIME). Returns {allowed (0/1), TAT after the call, now} with the floats as strings
# (Lua numbers would come back truncated to integers).
_LUA = """
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local units = tonumber(ARGV[4])
local now = tonumber(ARGV[6])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local op = ARGV[1]
local allowed = 1
if op == 'consume' then
  if tat + units * interval - window - now > tonumber(ARGV[5]) then
    allowed = 0
  else
    tat = tat + units * interval
  end
elseif op == 'shift' then
  tat = math.max(tat + units * interval, now)
end
if op ~= 'peek' and allowed == 1 then
  if tat > now then
    local ttl_ms = math.ceil(math.max(tat - now, window) * 1000)
    redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', ttl_ms)
  else
    redis.call('DEL', KEYS[1])
  end
end
return {allowed, string.format('%.17g', tat), string.format('%.17g', now)}
"""


class RedisLimiter(MemoryLimiter):
    """Shared limits; the inherited in-process state is used only while Redis is failing.

    The client belongs to the caller: `close()` does not close it."""

    def __init__(self, client: aioredis.Redis, prefix: str = "gwrl:", *, timeout_s: float = 0.25,
                 down_backoff_s: float = 1.0, warn_every_s: float = 30.0, max_keys: int = 100_000) -> None:
        super().__init__(max_keys=max_keys)
        self._redis = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)
        self._timeout_s = timeout_s
        self._down_backoff_s = down_backoff_s
        self._warn_every_s = warn_every_s
        self._down_until = 0.0  # time.monotonic() before which Redis is not tried
        self._warned_at: float | None = None

    async def consume(self, key: str, limit: Limit, cost: int = 1, now: float | None = None) -> Decision:
        check_cost(cost)
        got = await self._run("consume", key, limit, cost, now)
        if got is None:
            return self._consume_local(key, limit, cost, now)
        allowed, tat, at = got
        return decide(limit, tat, at, cost, allowed)

    async def peek(self, key: str, limit: Limit, now: float | None = None) -> Decision:
        got = await self._run("peek", key, limit, 0, now)
        if got is None:
            return await super().peek(key, limit, now)
        _, tat, at = got
        return decide(limit, tat, at, 1, fits(limit, tat, at, 1))

    async def refund(self, key: str, limit: Limit, cost: int, now: float | None = None) -> None:
        check_cost(cost)
        await self.adjust(key, limit, -cost, now)

    async def adjust(self, key: str, limit: Limit, delta: int, now: float | None = None) -> None:
        if await self._run("shift", key, limit, delta, now) is None:
            self._shift_local(key, limit, delta, now)

    async def reset(self, key: str) -> None:
        await super().reset(key)
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.delete(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def _run(self, op: str, key: str, limit: Limit, units: int,
                   now: float | None) -> tuple[bool, float, float] | None:
        """One script call: (allowed, TAT after, the time used), or None when Redis failed."""
        if self._down_until and time.monotonic() < self._down_until:
            return None
        args: list[str | float] = [op, limit.interval_s, limit.window_s, units, tolerance(limit),
                                   "" if now is None else now]
        try:
            async with asyncio.timeout(self._timeout_s):
                allowed, tat, at = await self._script(keys=[self._prefix + key], args=args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        if self._down_until:
            self._down_until = 0.0
            log.info("Redis rate limits are reachable again; limits are shared once more")
        return int(allowed) == 1, float(_text(tat)), float(_text(at))

    def _failed(self, exc: BaseException) -> None:
        t = time.monotonic()
        self._down_until = t + self._down_backoff_s
        if self._warned_at is None or t - self._warned_at >= self._warn_every_s:
            self._warned_at = t
            log.warning("Redis rate limits unavailable (%s: %s); limiting in this process only",
                        type(exc).__name__, exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
