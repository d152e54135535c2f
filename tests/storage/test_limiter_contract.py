"""One contract for rate limits, in memory and in Redis; Redis is shared by every instance and never
blocks requests when it is down."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from gatewayz.limits.limiter import Decision, Limit, MemoryLimiter
from gatewayz.limits.store_redis import RedisLimiter
from tests.databases import require_redis

T0 = 1_000_000.0
Factory = Callable[[], MemoryLimiter]


class _RedisPool:
    """RedisLimiters on separate clients sharing one unique prefix; removes its keys afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"gwrl-test-{uuid.uuid4().hex}:"
        self.clients: list[aioredis.Redis] = []

    def new(self) -> RedisLimiter:
        client = aioredis.Redis.from_url(self.url)
        self.clients.append(client)
        # A generous timeout: these tests check the shared counting, not the fall-back (tested below), and a
        # loaded CI machine can take longer than the production 0.25 s for a burst of 100 calls.
        return RedisLimiter(client, prefix=self.prefix, timeout_s=5.0)

    async def cleanup(self) -> None:
        if self.clients:
            client = self.clients[0]
            names = [k async for k in client.scan_iter(match=self.prefix + "*")]
            if names:
                await client.delete(*names)
        for client in self.clients:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def new_limiter(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    if request.param == "memory":
        yield MemoryLimiter
        return
    pool = _RedisPool(require_redis())
    try:
        yield pool.new
    finally:
        await pool.cleanup()


@pytest.fixture
async def redis_pool() -> AsyncIterator[_RedisPool]:
    pool = _RedisPool(require_redis())
    try:
        yield pool
    finally:
        await pool.cleanup()


def approx(x: float) -> Any:
    return pytest.approx(x, abs=1e-6)


async def test_burst_then_refusal(new_limiter: Factory) -> None:
    lim, limit = new_limiter(), Limit(5, 10.0)  # one unit per 2 s
    got = [await lim.consume("k", limit, now=T0) for _ in range(5)]
    assert [d.allowed for d in got] == [True] * 5
    assert [d.remaining for d in got] == [4, 3, 2, 1, 0]
    assert all(d.limit == 5 and d.retry_after_s == 0 for d in got)
    assert got[0].reset_s == approx(2.0) and got[-1].reset_s == approx(10.0)
    no = await lim.consume("k", limit, now=T0 + 0.5)
    assert no == Decision(False, 5, 0, approx(9.5), approx(1.5))


async def test_refill_at_the_right_rate(new_limiter: Factory) -> None:
    lim, limit = new_limiter(), Limit(5, 10.0)
    for _ in range(5):
        await lim.consume("k", limit, now=T0)
    assert (await lim.consume("k", limit, now=T0 + 1.9)).retry_after_s == approx(0.1)
    ok = await lim.consume("k", limit, now=T0 + 2.0)
    assert ok.allowed and ok.remaining == 0
    assert not (await lim.consume("k", limit, now=T0 + 3.9)).allowed
    assert (await lim.consume("k", limit, now=T0 + 4.0)).allowed
    # long idle: a full bucket, never more than `amount`
    later = [await lim.consume("k", limit, now=T0 + 100) for _ in range(6)]
    assert [d.allowed for d in later] == [True] * 5 + [False]


async def test_costs_above_one_and_refused_calls_consume_nothing(new_limiter: Factory) -> None:
    lim, limit = new_limiter(), Limit(100, 60.0)  # tokens: 0.6 s per token
    first = await lim.consume("k", limit, 60, now=T0)
    assert first.allowed and first.remaining == 40
    no = await lim.consume("k", limit, 50, now=T0)
    assert not no.allowed and no.remaining == 0 and no.retry_after_s == approx(6.0)
    assert (await lim.peek("k", limit, now=T0)).remaining == 40
    assert (await lim.consume("k", limit, 40, now=T0)).remaining == 0
    assert (await lim.consume("k", limit, 10, now=T0 + 6.0)).allowed
    assert not (await lim.consume("k", limit, 101, now=T0 + 1000)).allowed  # more than a full bucket


async def test_refund_never_past_a_full_bucket(new_limiter: Factory) -> None:
    lim, limit = new_limiter(), Limit(100, 60.0)
    await lim.consume("k", limit, 80, now=T0)
    await lim.refund("k", limit, 30, now=T0)
    assert (await lim.peek("k", limit, now=T0)).remaining == 50
    await lim.refund("k", limit, 1000, now=T0)
    full = await lim.peek("k", limit, now=T0)
    assert full.remaining == 100 and full.reset_s == 0
    assert (await lim.consume("k", limit, 100, now=T0)).allowed
    assert not (await lim.consume("k", limit, 1, now=T0)).allowed
    await lim.refund("fresh", limit, 5, now=T0)
    assert (await lim.peek("fresh", limit, now=T0)).remaining == 100


async def test_adjust_charges_into_debt(new_limiter: Factory) -> None:
    lim, limit = new_limiter(), Limit(100, 60.0)
    await lim.consume("k", limit, 50, now=T0)
    await lim.adjust("k", limit, 100, now=T0)  # real usage 150: 50 in debt
    owed = await lim.peek("k", limit, now=T0)
    assert not owed.allowed and owed.remaining == 0
    assert owed.reset_s == approx(90.0) and owed.retry_after_s == approx(30.6)
    assert not (await lim.consume("k", limit, now=T0 + 30.5)).allowed
    assert (await lim.consume("k", limit, now=T0 + 30.6)).allowed
    await lim.adjust("k", limit, -1000, now=T0 + 31)  # a negative adjustment is a refund
    assert (await lim.peek("k", limit, now=T0 + 31)).remaining == 100


async def test_reset_and_peek(new_limiter: Factory) -> None:
    lim, limit = new_limiter(), Limit(3, 60.0)
    fresh = await lim.peek("k", limit, now=T0)
    assert fresh == Decision(True, 3, 3, 0.0, 0.0)
    await lim.consume("k", limit, now=T0)
    for _ in range(5):
        assert (await lim.peek("k", limit, now=T0)).remaining == 2
    await lim.consume("k", limit, 2, now=T0)
    empty = await lim.peek("k", limit, now=T0)
    assert not empty.allowed and empty.retry_after_s == approx(20.0)
    assert (await lim.peek("other", limit, now=T0)).remaining == 3  # keys are independent
    await lim.reset("k")
    assert (await lim.consume("k", limit, 3, now=T0)).allowed


async def test_server_time_when_now_is_not_given(new_limiter: Factory) -> None:
    lim, limit = new_limiter(), Limit(2, 3600.0)
    got = [await lim.consume("k", limit) for _ in range(3)]
    assert [d.allowed for d in got] == [True, True, False]
    assert 1790 < got[2].retry_after_s <= 1800.0 and 3590 < got[2].reset_s <= 3600.0


async def test_bad_input_is_rejected(new_limiter: Factory) -> None:
    lim = new_limiter()
    for amount, window in ((0, 60.0), (-1, 60.0), (5, 0.0), (5, float("nan")), (5, float("inf"))):
        with pytest.raises(ValueError):
            Limit(amount, window)
    with pytest.raises(ValueError):
        await lim.consume("k", Limit(5, 1.0), -1)
    with pytest.raises(ValueError):
        await lim.refund("k", Limit(5, 1.0), -1)


async def test_redis_matches_memory(redis_pool: _RedisPool) -> None:
    """The Lua script and the Python store make the same decisions on a random workload."""
    mem, red = MemoryLimiter(), redis_pool.new()
    limit, rng, now = Limit(7, 60.0 / 7 * 3), random.Random(7), T0
    for i in range(150):
        now += rng.choice((0.0, 0.0, 0.3, 1.0, 4.0))
        op, n = rng.choice(("consume", "consume", "consume", "peek", "refund", "adjust")), rng.randint(1, 4)
        if op == "consume":
            assert await red.consume("k", limit, n, now=now) == await mem.consume("k", limit, n, now=now), i
        elif op == "peek":
            assert await red.peek("k", limit, now=now) == await mem.peek("k", limit, now=now), i
        else:
            for lim in (red, mem):
                await getattr(lim, op)("k", limit, n, now=now)


async def test_one_limit_across_instances(redis_pool: _RedisPool) -> None:
    one, two = redis_pool.new(), redis_pool.new()
    limit = Limit(30, 3600.0)
    got = await asyncio.gather(*((one if i % 2 else two).consume("shared", limit) for i in range(100)))
    assert sum(d.allowed for d in got) == 30
    assert sorted(d.remaining for d in got if d.allowed) == list(range(30))
    assert not (await one.peek("shared", limit)).allowed and not (await two.peek("shared", limit)).allowed
    await two.refund("shared", limit, 1)
    assert (await one.consume("shared", limit)).allowed
    await one.reset("shared")
    assert (await two.peek("shared", limit)).remaining == 30


async def test_redis_keys_expire_and_reset_removes_them(redis_pool: _RedisPool) -> None:
    lim, client = redis_pool.new(), redis_pool.clients[0]
    await lim.consume("k", Limit(10, 5.0), now=T0)
    assert 4000 < await client.pttl(redis_pool.prefix + "k") <= 5000
    await lim.adjust("k", Limit(10, 5.0), 100, now=T0)  # debt outlives the window
    assert 50_000 < await client.pttl(redis_pool.prefix + "k") <= 55_000
    await lim.reset("k")
    assert await client.exists(redis_pool.prefix + "k") == 0


async def test_redis_down_falls_back_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.1, socket_timeout=0.1)
    lim, limit = RedisLimiter(client), Limit(5, 60.0)
    try:
        with caplog.at_level(logging.WARNING, logger="gatewayz.limits"):
            start = time.monotonic()
            got = [await lim.consume("k", limit) for _ in range(10)]
            await lim.adjust("k", limit, 1)
            await lim.refund("k", limit, 1)
            assert (await lim.peek("k", limit)).remaining == 0
            await lim.reset("k")
            assert time.monotonic() - start < 1.0
        assert [d.allowed for d in got] == [True] * 5 + [False] * 5  # still limited, in this process
        assert len([r for r in caplog.records if r.name == "gatewayz.limits"]) == 1
    finally:
        await client.aclose()


async def test_hung_redis_does_not_block_requests() -> None:
    """A server that accepts and never answers: each call is bounded by timeout_s, then Redis is skipped."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")  # no client-side timeouts at all
    lim = RedisLimiter(client, timeout_s=0.1, down_backoff_s=5.0)
    try:
        start = time.monotonic()
        got = [await lim.consume("k", Limit(3, 60.0)) for _ in range(10)]
        assert time.monotonic() - start < 1.0
        assert [d.allowed for d in got] == [True] * 3 + [False] * 7
    finally:
        await client.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_redis_errors_fall_back_then_recover(redis_pool: _RedisPool, caplog: pytest.LogCaptureFixture) -> None:
    lim, limit = redis_pool.new(), Limit(2, 60.0)
    lim._down_backoff_s = 0.0
    real, failing = lim._script, [3]

    async def flaky(**kwargs: Any) -> Any:
        if failing[0] > 0:
            failing[0] -= 1
            raise RedisConnectionError("boom")
        return await real(**kwargs)

    lim._script = flaky  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="gatewayz.limits"):
        got = [await lim.consume("k", limit, now=T0) for _ in range(3)]  # all three decided in memory
    assert [d.allowed for d in got] == [True, True, False]
    assert len([r for r in caplog.records if r.name == "gatewayz.limits"]) == 1  # warned once
    assert (await lim.consume("k", limit, now=T0)).allowed  # Redis again: its own, untouched count
    assert await redis_pool.clients[0].exists(redis_pool.prefix + "k") == 1


async def test_memory_stays_bounded() -> None:
    lim, limit = MemoryLimiter(max_keys=1000), Limit(10, 60.0)
    for i in range(100_000):
        await lim.consume(f"ip-{i}", limit, now=T0)
    assert len(lim) == 1000
    assert (await lim.peek("ip-99999", limit, now=T0)).remaining == 9  # the newest are kept
    assert (await lim.peek("ip-0", limit, now=T0)).remaining == 10  # the oldest were evicted
    idle = MemoryLimiter(sweep_interval_s=10.0)
    for i in range(50):
        await idle.consume(f"ip-{i}", Limit(10, 5.0), now=T0)
    await idle.consume("busy", Limit(10, 600.0), 10, now=T0 + 20)  # triggers the sweep
    assert len(idle) == 1
