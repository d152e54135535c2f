"""The allowance (spent before purchased credits, reset per period) and the daily spend counters: one contract
for both credit authorities and every counter backend, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.billing.allowance import SUBSCRIPTION_ALLOWANCE, TRIAL, Account, Period
from gatewayz.billing.credits import MemoryAuthority, SqlAuthority
from gatewayz.billing.store import LedgerStore, Settlement
from gatewayz.billing.writer import SettlementWriter
from gatewayz.errors import InsufficientCredits
from gatewayz.plans.caps import DailySpend, MemoryDailySpend, RedisDailySpend, Refusal, Scope, SqlDailySpend
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import credit_transactions, users
from gatewayz.users.store import UserStore
from tests.databases import require_redis

USAGE = {"endpoint": "chat.completions", "model": "m", "stream": False, "status": 200, "prompt_tokens": 1,
         "completion_tokens": 1, "cached_tokens": 0, "reasoning_tokens": 0, "latency_ms": 1.0, "attempts": 1}


class Periods:
    """A policy whose current period the test moves by hand."""

    def __init__(self, key: str, grant: int, kind: str = SUBSCRIPTION_ALLOWANCE) -> None:
        self.now = Period(key, grant, kind)
        self.seen: list[Account] = []

    def __call__(self, account: Account) -> Period:
        self.seen.append(account)
        return self.now


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


async def _user(engine: AsyncEngine, credits: int) -> int:
    return (await UserStore(engine).create(f"{uuid.uuid4().hex[:12]}@example.com", "user", credits, "t")).id


async def _pools(engine: AsyncEngine, user_id: int) -> dict[str, Any]:
    """The user's columns, and each pool's ledger sum (which must equal them)."""
    t = credit_transactions
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(users.c.balance_nanos, users.c.allowance_nanos, users.c.held_nanos,
                                            users.c.allowance_period).where(users.c.id == user_id))).one()
        sums = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.c.amount_nanos), 0),
                                             sa.func.coalesce(sa.func.sum(t.c.allowance_nanos), 0))
                                   .where(t.c.user_id == user_id))).one()
    return {"balance": int(row[0]), "allowance": int(row[1]), "held": int(row[2]), "period": row[3],
            "ledger_balance": int(sums[0]), "ledger_allowance": int(sums[1])}


async def _rows(engine: AsyncEngine, user_id: int) -> list[dict[str, Any]]:
    t = credit_transactions
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(sa.select(t).where(t.c.user_id == user_id)
                                                              .order_by(t.c.id))]


def _books_balance(p: dict[str, Any]) -> None:
    assert p["balance"] == p["ledger_balance"] and p["allowance"] == p["ledger_allowance"], p
    assert p["balance"] >= 0 and p["allowance"] >= 0 and p["held"] == 0, p


@pytest.fixture(params=["memory", "sql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def world(engine: AsyncEngine, kind: str) -> AsyncIterator[tuple[Any, Periods, LedgerStore]]:
    ledger = LedgerStore(engine)
    writer = SettlementWriter(ledger, flush_ms=5)
    policy = Periods("2025-01/starter", 300)
    auth = MemoryAuthority(ledger, writer, policy) if kind == "memory" else SqlAuthority(ledger, writer, 3600, policy)
    yield auth, policy, ledger
    await writer.close()
    ledger.close()


async def test_allowance_pays_first_then_purchased_credits(engine: AsyncEngine, world: Any) -> None:
    auth, policy, _ = world
    uid = await _user(engine, 1000)
    hold = await auth.reserve(uid, "r1", 500, "2025-01/starter")   # the first request of the period grants 300
    assert hold.remaining == 1000 + 300 - 500
    assert auth.settle(hold, Settlement(uid, "r1", 400, usage=USAGE)) == 400
    await auth.drain()
    assert await auth.funds(uid) == (900, 0)
    p = await _pools(engine, uid)
    assert (p["balance"], p["allowance"], p["period"]) == (900, 0, "2025-01/starter")
    _books_balance(p)
    rows = await _rows(engine, uid)
    grant = next(r for r in rows if r["type"] == SUBSCRIPTION_ALLOWANCE)
    assert (grant["amount_nanos"], grant["allowance_nanos"], grant["allowance_after_nanos"]) == (0, 300, 300)
    usage = next(r for r in rows if r["type"] == "api_usage")
    assert (usage["amount_nanos"], usage["allowance_nanos"]) == (-100, -300)
    assert (usage["balance_after_nanos"], usage["allowance_after_nanos"]) == (900, 0)
    # Another request of the same period grants nothing more.
    hold = await auth.reserve(uid, "r2", 10, "2025-01/starter")
    auth.settle(hold, Settlement(uid, "r2", 10, usage=USAGE))
    await auth.drain()
    assert await auth.funds(uid) == (890, 0)
    assert [r["type"] for r in await _rows(engine, uid)].count(SUBSCRIPTION_ALLOWANCE) == 1


async def test_concurrent_holds_on_allowance_and_credits_never_overspend(engine: AsyncEngine, world: Any) -> None:
    auth, policy, _ = world
    policy.now = Period("2025-01/pro", 550, SUBSCRIPTION_ALLOWANCE)
    uid = await _user(engine, 450)
    results = await asyncio.gather(*(auth.reserve(uid, f"r{i}", 100, "2025-01/pro") for i in range(40)),
                                   return_exceptions=True)
    holds = [r for r in results if not isinstance(r, BaseException)]
    assert len(holds) == 10, results
    assert all(isinstance(r, InsufficientCredits) for r in results if isinstance(r, BaseException))
    for i, h in enumerate(holds):
        if i % 3:
            auth.settle(h, Settlement(uid, h.request_id, 90 + i, usage=USAGE))
        else:
            auth.release(h)
    await auth.drain()
    spent = sum(90 + i for i in range(10) if i % 3)
    assert spent > 550
    assert await auth.funds(uid) == (450 - (spent - 550), 0)
    _books_balance(await _pools(engine, uid))


async def test_new_period_expires_the_rest_and_grants_anew(engine: AsyncEngine, world: Any) -> None:
    auth, policy, _ = world
    uid = await _user(engine, 1000)
    hold = await auth.reserve(uid, "jan", 100, "2025-01/starter")
    auth.settle(hold, Settlement(uid, "jan", 120, usage=USAGE))   # capped at the hold
    await auth.drain()
    assert await auth.funds(uid) == (1000, 200)
    policy.now = Period("2025-02/starter", 300, SUBSCRIPTION_ALLOWANCE)
    hold = await auth.reserve(uid, "feb", 50, "2025-02/starter")
    assert hold.remaining == 1000 + 300 - 50   # January's 200 did not roll over
    auth.settle(hold, Settlement(uid, "feb", 50, usage=USAGE))
    await auth.drain()
    assert await auth.funds(uid) == (1000, 250)
    rows = await _rows(engine, uid)
    expired = [r for r in rows if r["type"] == "allowance_expired"]
    assert [(r["allowance_nanos"], r["allowance_after_nanos"], r["amount_nanos"]) for r in expired] == [(-200, 0, 0)]
    assert [r["allowance_nanos"] for r in rows if r["type"] == SUBSCRIPTION_ALLOWANCE] == [300, 300]
    _books_balance(await _pools(engine, uid))


async def test_reset_keeps_only_what_open_holds_need(engine: AsyncEngine, world: Any) -> None:
    """A request holding money when the period turns is still paid as promised: the old allowance it needs
    stays (never more), the rest expires."""
    auth, policy, _ = world
    policy.now = Period("trial/standard", 500, TRIAL)
    uid = await _user(engine, 0)
    hold = await auth.reserve(uid, "inflight", 400, "trial/standard")
    policy.now = Period("2025-03/free", 0, SUBSCRIPTION_ALLOWANCE)
    with pytest.raises(InsufficientCredits):
        await auth.reserve(uid, "after", 1, "2025-03/free")
    assert auth.settle(hold, Settlement(uid, "inflight", 400, usage=USAGE)) == 400
    await auth.drain()
    assert await auth.funds(uid) == (0, 0)
    rows = await _rows(engine, uid)
    assert [(r["type"], r["allowance_nanos"]) for r in rows] == [
        ("trial", 500), ("trial_expired", -100), ("api_usage", -400)]
    _books_balance(await _pools(engine, uid))


async def test_reset_with_a_condition_changes_the_account_atomically(engine: AsyncEngine, world: Any) -> None:
    auth, policy, _ = world
    uid = await _user(engine, 10)
    first = await auth.reset(uid, {"trial_source": "standard"}, [users.c.trial_source.is_(None)])
    assert first is not None and first.period == "2025-01/starter" and first.allowance == 300
    assert policy.seen[-1].trial_source == "standard"   # the policy sees the row as changed
    assert await auth.reset(uid, {"trial_source": "again"}, [users.c.trial_source.is_(None)]) is None
    assert await auth.reset(987_654, {"plan": "pro"}) is None
    assert await auth.funds(uid) == (10, 300)


# ------------------------------------------------------------------------------------- daily spend counters


@pytest.fixture(params=["memory", "sql", "redis"])
async def counters(request: pytest.FixtureRequest, engine: AsyncEngine) -> AsyncIterator[tuple[DailySpend, Any]]:
    seeded: dict[str, int] = {}
    tasks: set[asyncio.Task[Any]] = set()

    async def seed(scope: Scope, since: datetime) -> int:
        return seeded.get(scope.name, 0)

    def spawn(write: Any) -> None:
        task = asyncio.get_running_loop().create_task(write())
        tasks.add(task)

    async def settle() -> None:
        await asyncio.gather(*tasks)

    if request.param == "memory":
        c: DailySpend = MemoryDailySpend(seed)
    elif request.param == "sql":
        c = SqlDailySpend(engine, seed, spawn)
    else:
        import redis.asyncio as aioredis
        client = aioredis.Redis.from_url(require_redis())
        c = RedisDailySpend(client, uuid.uuid4().hex[:12], seed, spawn)
    yield c, (seeded, settle)
    if request.param == "redis":
        await client.aclose()


async def test_daily_counters_are_exact_and_atomic_across_scopes(counters: Any) -> None:
    c, (seeded, settle) = counters
    day, since = "2025-05-01", datetime(2025, 5, 1, tzinfo=UTC)
    user = Scope("u:1", 1, None, 1000)
    key = Scope("k:9", 1, 9, 450)
    seeded["k:9"] = 50   # spent before the cap was counted: from the usage records
    results = await asyncio.gather(*(c.take([user, key], day, since, 100) for _ in range(30)))
    given = [r for r in results if not isinstance(r, Refusal)]
    refused = [r for r in results if isinstance(r, Refusal)]
    assert len(given) == 4 and len(refused) == 26    # the key's cap: 50 + 4 x 100 <= 450
    assert all(r.scope == key for r in refused)
    assert await c.spent(key, day, since) == 450 and await c.spent(user, day, since) == 400
    # Settling gives back what was not spent; the user scope alone still has room.
    for g in given:
        g(60)
    await settle()
    assert await c.spent(key, day, since) == 210 and await c.spent(user, day, since) == 160
    alone = [await c.take([user], day, since, 300) for _ in range(4)]
    assert sum(not isinstance(r, Refusal) for r in alone) == 2   # 160 + 2 x 300 <= 1000 < 160 + 3 x 300
    refusal = alone[-1]
    assert isinstance(refusal, Refusal) and refusal.spent == 760
    # Another day starts from what the usage records say.
    seeded["u:1"] = 5
    tomorrow = since + timedelta(days=1)
    assert await c.spent(user, "2025-05-02", tomorrow) == 5
