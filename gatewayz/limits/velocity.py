"""Velocity mode: when the gateway's error rate spikes, every request limit (layers 1 to 3) tightens.

Each inference answer (a POST under /v1/, the traffic the limits govern; health checks and dashboards would only
dilute the rate) is counted in this process, an increment and no I/O. An error is any 4xx or 5xx except the
limiter's own 429s (counting those would keep the mode on by itself). Once a
`tick_s`, each process judges the last `window_s` seconds: with Redis, it adds its counts to shared per-second
buckets and one Lua script judges the sum and moves the shared state (every worker and instance agrees);
without Redis, or while Redis fails, the process judges its own counts. The hot path only reads `multiplier`.

The mode starts when the error rate is above the threshold with at least `min_requests` in the window, and
ends after `cooldown_s` spent at or below it (going above again restarts the cooldown)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gatewayz.settings import VelocityConfig

log = logging.getLogger("gatewayz.limits")

# KEYS: the bucket hash, the state hash. ARGV: requests, errors (this process's since its last tick), window_s,
# min_requests, threshold, cooldown_s. Returns {active, since, calm_since, requests, errors, now} as strings.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sec = tonumber(t[1])
local window = tonumber(ARGV[3])
if tonumber(ARGV[1]) > 0 then
  redis.call('HINCRBY', KEYS[1], 'r:' .. sec, ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'e:' .. sec, ARGV[2])
end
local requests, errors, stale = 0, 0, {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local at = tonumber(string.sub(flat[i], 3))
  if at <= sec - window then
    stale[#stale + 1] = flat[i]
  elseif string.sub(flat[i], 1, 1) == 'r' then
    requests = requests + tonumber(flat[i + 1])
  else
    errors = errors + tonumber(flat[i + 1])
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
redis.call('EXPIRE', KEYS[1], window * 2 + 10)
local s = redis.call('HMGET', KEYS[2], 'active', 'since', 'calm_since')
local active, since, calm = s[1] == '1', s[2] or '', s[3] or ''
local above = requests >= tonumber(ARGV[4]) and errors > tonumber(ARGV[5]) * requests
if above then
  calm = ''
  if not active then active = true; since = string.format('%.6f', now) end
elseif active then
  if calm == '' then calm = string.format('%.6f', now) end
  if now - tonumber(calm) >= tonumber(ARGV[6]) then active = false; since = string.format('%.6f', now); calm = '' end
end
redis.call('HSET', KEYS[2], 'active', active and '1' or '0', 'since', since, 'calm_since', calm)
redis.call('EXPIRE', KEYS[2], 86400)
return {active and '1' or '0', since, calm, tostring(requests), tostring(errors), string.format('%.6f', now)}
"""


@dataclass(frozen=True, slots=True)
class VelocityState:
    active: bool = False
    since: float | None = None        # epoch seconds of the last change of mode
    calm_since: float | None = None   # active, and at or below the threshold since then
    requests: int = 0                 # in the window
    errors: int = 0
    shared: bool = False              # judged over every process (Redis), or this process only


def step(state: VelocityState, requests: int, errors: int, now: float, cfg: VelocityConfig) -> VelocityState:
    """The next state for the counts of the window (the same rules as the Lua script)."""
    above = requests >= cfg.min_requests and errors > cfg.error_rate_threshold * requests
    active, since, calm = state.active, state.since, state.calm_since
    if above:
        calm = None
        if not active:
            active, since = True, now
    elif active:
        calm = now if calm is None else calm
        if now - calm >= cfg.cooldown_s:
            active, since, calm = False, now, None
    return VelocityState(active, since, calm, requests, errors, False)


def _float(value: Any) -> float | None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return float(text) if text else None


class Velocity:
    def __init__(self, cfg: VelocityConfig, client: aioredis.Redis | None, key_prefix: str = "gatewayz:velocity",
                 tick_s: float = 1.0, timeout_s: float = 0.25) -> None:
        self.cfg = cfg
        self.multiplier = 1.0
        self.state = VelocityState()
        self._redis = client
        self._script = client.register_script(_LUA) if client is not None else None
        self._keys = [key_prefix + ":buckets", key_prefix + ":state"]
        self._tick_s, self._timeout_s = tick_s, timeout_s
        self._buckets: deque[list[int]] = deque()   # [second, requests, errors], oldest first
        self._pending = [0, 0]                      # not yet added to the shared buckets
        self._task: asyncio.Task[None] | None = None
        self._redis_ok = True

    @property
    def mode(self) -> str:
        return "velocity" if self.multiplier != 1.0 else "normal"

    def record(self, status: int) -> None:
        """One answered inference request: an increment or two."""
        if not self.cfg.enabled:
            return
        error = 1 if status >= 400 and status != 429 else 0
        sec = int(time.time())
        if self._buckets and self._buckets[-1][0] == sec:
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += error
        else:
            self._buckets.append([sec, 1, error])
        self._pending[0] += 1
        self._pending[1] += error

    def start(self) -> None:
        if self.cfg.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            await self.tick()

    async def tick(self) -> None:
        """Judge the window now (also run once a `tick_s` in the background)."""
        requests, errors = self._pending
        self._pending = [0, 0]
        now = time.time()
        local = self._local_counts(now)  # also drops buckets that left the window
        state = await self._shared(requests, errors) if self._script is not None else None
        if state is None:
            state = step(self.state, *local, now, self.cfg)
        if state.active != self.state.active:
            log.warning("velocity mode %s: %d errors in %d requests over %ds", "on" if state.active else "off",
                        state.errors, state.requests, self.cfg.window_s)
        self.state = state
        self.multiplier = self.cfg.multiplier if state.active else 1.0

    def _local_counts(self, now: float) -> tuple[int, int]:
        oldest = int(now) - self.cfg.window_s
        while self._buckets and self._buckets[0][0] <= oldest:
            self._buckets.popleft()
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    async def _shared(self, requests: int, errors: int) -> VelocityState | None:
        assert self._script is not None
        c = self.cfg
        try:
            async with asyncio.timeout(self._timeout_s):
                got = await self._script(keys=self._keys, args=[requests, errors, c.window_s, c.min_requests,
                                                               c.error_rate_threshold, c.cooldown_s])
        except (RedisError, OSError) as exc:
            if self._redis_ok:
                log.warning("velocity mode judged in this process only: Redis unavailable (%s)", type(exc).__name__)
            self._redis_ok = False
            return None
        self._redis_ok = True
        active, since, calm, total, errs, _ = got
        return VelocityState(_float(active) == 1.0, _float(since), _float(calm), int(_float(total) or 0),
                             int(_float(errs) or 0), True)

    def status(self) -> dict[str, Any]:
        s, c = self.state, self.cfg
        recovering = s.calm_since is not None and s.active
        return {"enabled": c.enabled, "active": s.active, "mode": self.mode, "multiplier": self.multiplier,
                "since": s.since, "error_rate": round(s.errors / s.requests, 4) if s.requests else 0.0,
                "requests": s.requests, "errors": s.errors, "window_s": c.window_s,
                "thresholds": {"error_rate": c.error_rate_threshold, "min_requests": c.min_requests,
                               "cooldown_s": c.cooldown_s, "multiplier": c.multiplier},
                "recovering_since": s.calm_since if recovering else None,
                "shared": s.shared}
