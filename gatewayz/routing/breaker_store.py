"""Where breaker state lives: in process, or in Redis shared by every worker and instance.

The Redis store keeps a local snapshot for the hot path. Every transition and every failure is
published, so other workers update their snapshot at once; a success costs a Redis call only when some
worker saw a failure since the last reset. If Redis is unreachable, the local snapshot carries on as an
in-memory breaker and requests are never failed because of Redis."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from gatewayz.routing.breaker import Breaker, BreakerPolicy, Outcome, State, now, step

log = logging.getLogger("gatewayz.routing")
CHANNEL = "gatewayz:breakers"
_LUA = """
local s = redis.call('HMGET', KEYS[1], 'state', 'failures', 'successes', 'opened_at')
local state = s[1] or 'closed'
local failures = tonumber(s[2] or '0')
local successes = tonumber(s[3] or '0')
local opened = tonumber(s[4] or '0')
local now = tonumber(ARGV[2])
if state == 'open' and now - opened >= tonumber(ARGV[4]) then state = 'half_open' end
local before = state
if before ~= 'open' then
  if ARGV[1] == 'failure' then
    if before == 'half_open' then
      state = 'open'; opened = now; successes = 0
    else
      failures = failures + 1
      if failures >= tonumber(ARGV[3]) then state = 'open'; opened = now; failures = 0 end
    end
  elseif before == 'half_open' then
    successes = successes + 1
    if successes >= tonumber(ARGV[5]) then state = 'closed'; successes = 0; failures = 0 end
  else
    failures = 0
  end
end
redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'successes', successes, 'opened_at', opened)
redis.call('EXPIRE', KEYS[1], 86400)
return {before, state, failures, successes, tostring(opened)}
"""


class MemoryBreakers:
    TRIAL_TIMEOUT_S = 30.0

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._b: dict[str, Breaker] = {}
        self._trials: dict[str, float] = {}   # half-open keys with a trial request in flight (this process)
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        self.on_transition: Callable[[str, str, str], None] = lambda key, before, after: None

    def allows(self, key: str) -> bool:
        b = self._b.get(key)
        if b is None:
            return True
        state = b.effective(self.policy, now())
        if state == "half_open":
            started = self._trials.get(key)
            return started is None or now() - started > self.TRIAL_TIMEOUT_S
        return state != "open"

    def acquire(self, provider: str, upstream_model: str) -> bool:
        """Right before sending: a half-open breaker lets one trial request through at a time."""
        keys = (provider, f"{provider}|{upstream_model}")
        if not all(self.allows(k) for k in keys):
            return False
        t = now()
        for k in keys:
            b = self._b.get(k)
            if b is not None and b.effective(self.policy, t) == "half_open":
                self._trials[k] = t
        return True

    def retry_after(self, key: str) -> float:
        b = self._b.get(key)
        return b.retry_after(self.policy, now()) if b else 0.0

    def needs_report(self, key: str, outcome: Outcome) -> bool:
        b = self._b.get(key)
        return outcome == "failure" or (b is not None and (b.state != "closed" or b.failures > 0))

    async def record(self, key: str, outcome: Outcome) -> tuple[State, State]:
        return self._record_local(key, outcome)

    def _record_local(self, key: str, outcome: Outcome) -> tuple[State, State]:
        b = self._b.setdefault(key, Breaker())
        before, after = step(b, outcome, self.policy, now())
        self._count(key, before, after)
        return before, after

    def report(self, provider: str, upstream_model: str, outcome: Outcome, model_only: bool = False) -> None:
        """Record one attempt's outcome without waiting: for the provider, and for the provider and model.
        `model_only` (a 404: this provider lacks this model) leaves the provider's own breaker alone."""
        keys = [f"{provider}|{upstream_model}"] if model_only else [provider, f"{provider}|{upstream_model}"]
        self._trials.pop(provider, None)
        self._trials.pop(f"{provider}|{upstream_model}", None)
        for key in keys:
            if self.needs_report(key, outcome):
                self._submit(key, outcome)

    def _submit(self, key: str, outcome: Outcome) -> None:
        self._record_local(key, outcome)

    def _count(self, key: str, before: State, after: State) -> None:
        if before != after:
            self.transitions[(key, before, after)] += 1
            self.on_transition(key, before, after)
            log.warning("circuit breaker %s: %s -> %s", key, before, after)

    def apply(self, key: str, state: State, failures: int, successes: int, opened_at: float) -> None:
        b = self._b.setdefault(key, Breaker())
        b.state, b.failures, b.successes, b.opened_at = state, failures, successes, opened_at

    def get(self, key: str) -> dict[str, Any]:
        b = self._b.get(key) or Breaker()
        t = now()
        return {"key": key, "state": b.effective(self.policy, t), "consecutive_failures": b.failures,
                "half_open_successes": b.successes, "opened_at": b.opened_at or None,
                "retry_after_s": round(b.retry_after(self.policy, t), 3) if b.state == "open" else 0}

    def keys(self) -> list[str]:
        return sorted(self._b)

    async def reset(self, key: str | None) -> None:
        if key is None:
            self._b.clear()
        else:
            self._b.pop(key, None)

    async def close(self) -> None:
        return None


class RedisBreakers(MemoryBreakers):
    def __init__(self, policy: BreakerPolicy, client: aioredis.Redis, namespace: str = "") -> None:
        super().__init__(policy)
        self._redis = client
        # One deployment's breakers: another deployment sharing the Redis has its own keys and channel.
        self._keys = f"gwcb:{namespace}"
        self._channel = f"{CHANNEL}{':' + namespace.rstrip(':') if namespace else ''}"
        self._script = client.register_script(_LUA)
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    def _submit(self, key: str, outcome: Outcome) -> None:
        task = asyncio.get_running_loop().create_task(self.record(key, outcome))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def record(self, key: str, outcome: Outcome) -> tuple[State, State]:
        if not self.needs_report(key, outcome):
            return "closed", "closed"
        p = self.policy
        try:
            before, after, failures, successes, opened = await self._script(
                keys=[self._keys + key],
                args=[outcome, now(), p.failure_threshold, p.cooldown_s, p.half_open_successes])
        except (aioredis.RedisError, OSError):
            return self._record_local(key, outcome)  # Redis is down: this process decides alone
        before, after = _text(before), _text(after)
        self.apply(key, after, int(failures), int(successes), float(_text(opened)))  # type: ignore[arg-type]
        self._count(key, before, after)  # type: ignore[arg-type]
        try:
            message = f"{key}\t{after}\t{int(failures)}\t{int(successes)}\t{_text(opened)}"
            await self._redis.publish(self._channel, message)
        except (aioredis.RedisError, OSError):
            pass  # the others read it on their next report
        return before, after  # type: ignore[return-value]

    async def reset(self, key: str | None) -> None:
        await super().reset(key)
        try:
            if key is None:
                names = [k async for k in self._redis.scan_iter(match=self._keys + "*")]
                if names:
                    await self._redis.delete(*names)
            else:
                await self._redis.delete(self._keys + key)
            await self._redis.publish(self._channel, f"{key or '*'}\treset")
        except (aioredis.RedisError, OSError):
            log.warning("could not reset breaker %s in Redis", key or "*")

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    backoff = 0.5
                    while True:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                        if msg is not None:
                            self._on_message(_text(msg["data"]))
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_message(self, data: str) -> None:
        parts = data.split("\t")
        if len(parts) == 2 and parts[1] == "reset":
            if parts[0] == "*":
                self._b.clear()
            else:
                self._b.pop(parts[0], None)
        elif len(parts) == 5 and parts[1] in ("closed", "open", "half_open"):
            self.apply(parts[0], parts[1], int(parts[2]), int(parts[3]), float(parts[4]))  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._pending, return_exceptions=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
