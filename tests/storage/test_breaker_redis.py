"""The Redis breaker applies exactly the rules of the in-process one, and every process sees it."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from gatewayz.routing import breaker_store
from gatewayz.routing.breaker import BreakerPolicy
from gatewayz.routing.breaker_store import MemoryBreakers, RedisBreakers
from tests.databases import require_redis

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=10, half_open_successes=2)


async def test_lua_matches_python_and_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    url = require_redis()
    clock = [1000.0]
    monkeypatch.setattr(breaker_store, "now", lambda: clock[0])
    key = f"test-{uuid.uuid4().hex}"
    c1, c2 = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    one, two, ref = RedisBreakers(POLICY, c1), RedisBreakers(POLICY, c2), MemoryBreakers(POLICY)
    script = [("failure", 0), ("failure", 0), ("success", 0), ("failure", 0), ("failure", 0), ("failure", 0),
              ("success", 1), ("failure", 11), ("success", 22), ("success", 22), ("failure", 23)]
    try:
        for i, (outcome, t) in enumerate(script):
            clock[0] = 1000.0 + t
            worker = one if i % 2 == 0 else two  # alternate processes: one shared count
            got = await worker.record(key, outcome)  # type: ignore[arg-type]
            want = await ref.record(key, outcome)  # type: ignore[arg-type]
            assert got == want, (i, outcome, got, want)
        await one.reset(key)
        assert await c1.exists(f"gwcb:{key}") == 0
    finally:
        await c1.aclose()
        await c2.aclose()
