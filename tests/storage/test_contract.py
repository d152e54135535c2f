"""One contract for the stores and credit authorities, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.billing.credits import MemoryAuthority, SqlAuthority
from gatewayz.billing.store import LedgerStore, NegativeBalance, Settlement, UnknownUser
from gatewayz.billing.writer import SettlementWriter
from gatewayz.errors import Conflict, InsufficientCredits
from gatewayz.keys.store import KeyStore
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import credit_holds, credit_transactions, usage_records, users
from gatewayz.users.store import EmailTaken, UserStore

USD = 1_000_000_000


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


async def _user(engine: AsyncEngine, credits: int, email: str = "") -> int:
    user = await UserStore(engine).create(email or f"{id(object())}-{credits}@example.com", "user", credits, "test")
    return user.id


async def _ledger_sum(engine: AsyncEngine, user_id: int) -> int:
    async with engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(credit_transactions.c.amount_nanos), 0))
                                    .where(credit_transactions.c.user_id == user_id))).scalar_one()
    return int(total)


async def _row(engine: AsyncEngine, user_id: int) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(users.c.balance_nanos, users.c.held_nanos)
                                  .where(users.c.id == user_id))).one()
    return int(row[0]), int(row[1])


async def test_user_creation_writes_its_opening_credit(engine: AsyncEngine) -> None:
    store = UserStore(engine)
    user = await store.create("a@example.com", "user", 5 * USD, "test")
    assert user.balance_nanos == 5 * USD
    assert await _ledger_sum(engine, user.id) == 5 * USD
    with pytest.raises(EmailTaken):
        await store.create("a@example.com", "user", 0, "test")
    listed, total = await store.list(10, 0)
    assert total == 1 and listed[0].email == "a@example.com"


async def test_add_credits_and_refuse_negative_balance(engine: AsyncEngine) -> None:
    ledger = LedgerStore(engine)
    uid = await _user(engine, USD)
    assert await ledger.add(uid, 2 * USD, "admin_credit", actor="t") == 3 * USD
    assert await ledger.add(uid, -USD, "adjustment", actor="t") == 2 * USD
    with pytest.raises(NegativeBalance):
        await ledger.add(uid, -5 * USD, "adjustment", actor="t")
    with pytest.raises(UnknownUser):
        await ledger.add(999_999, USD, "admin_credit")
    assert await ledger.balance(uid) == 2 * USD == await _ledger_sum(engine, uid)
    rows, total = await ledger.transactions(uid, limit=2, offset=0)
    assert total == 3 and len(rows) == 2


async def test_settlement_batch_is_exact_idempotent_and_never_negative(engine: AsyncEngine) -> None:
    ledger = LedgerStore(engine)
    a, b = await _user(engine, 1000), await _user(engine, 50)
    usage = {"endpoint": "chat.completions", "model": "m", "stream": False, "status": 200,
             "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0, "reasoning_tokens": 0,
             "latency_ms": 1.0, "attempts": 1}
    batch = [Settlement(a, "r1", 100, usage=usage), Settlement(a, "r2", 200, usage=usage),
             Settlement(b, "r1", 80, usage=usage)]  # b has only 50: capped, never below zero
    assert await ledger.apply(batch) == [100, 200, 50]
    assert await ledger.balance(a) == 700 and await ledger.balance(b) == 0
    # The same request ids again (a retry after a crash, say): nothing is charged twice.
    assert await ledger.apply([Settlement(a, "r1", 100, usage=usage), Settlement(a, "r3", 10, usage=usage)]) == [0, 10]
    assert await ledger.balance(a) == 690 == await _ledger_sum(engine, a)
    assert await ledger.charged(a, "r3") and not await ledger.charged(a, "r9")
    async with engine.connect() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(usage_records))).scalar_one()
    assert n == 4


async def test_database_holds(engine: AsyncEngine) -> None:
    ledger = LedgerStore(engine)
    uid = await _user(engine, 100)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await ledger.hold(uid, "h1", 60, later) == 40  # what is still available
    assert await ledger.hold(uid, "h2", 60, later) is None  # only 40 left
    with pytest.raises(IntegrityError):
        await ledger.hold(uid, "h1", 1, later)
    assert await _row(engine, uid) == (100, 60)
    assert await ledger.settle_hold(Settlement(uid, "h1", 25, hold_nanos=60)) == 25
    assert await _row(engine, uid) == (75, 0)
    assert await ledger.hold(uid, "h3", 70, datetime.now(UTC) - timedelta(seconds=1)) == 5
    assert await ledger.sweep_expired_holds() == 1
    assert await _row(engine, uid) == (75, 0)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(credit_holds))).scalar_one() == 0


@pytest.fixture(params=["memory", "sql"])
async def authority(request: pytest.FixtureRequest,
                    engine: AsyncEngine) -> AsyncIterator[MemoryAuthority | SqlAuthority]:
    ledger = LedgerStore(engine)
    writer = SettlementWriter(ledger, flush_ms=5)
    auth = MemoryAuthority(ledger, writer) if request.param == "memory" else SqlAuthority(ledger, writer, 3600)
    yield auth
    await writer.close()


async def test_authority_concurrent_holds_never_overspend(engine: AsyncEngine,
                                                          authority: MemoryAuthority | SqlAuthority) -> None:
    uid = await _user(engine, 1000)
    results = await asyncio.gather(*(authority.reserve(uid, f"r{i}", 100) for i in range(40)),
                                   return_exceptions=True)
    holds = [r for r in results if not isinstance(r, BaseException)]
    assert len(holds) == 10
    assert all(isinstance(r, InsufficientCredits) for r in results if isinstance(r, BaseException))
    for i, h in enumerate(holds):
        cost = authority.settle(h, Settlement(uid, h.request_id, 30 + i)) if i % 2 == 0 else authority.release(h)
        del cost
    await authority.drain()
    spent = sum(30 + i for i in range(10) if i % 2 == 0)
    assert await authority.balance(uid) == 1000 - spent
    assert await _row(engine, uid) == (1000 - spent, 0)
    assert await _ledger_sum(engine, uid) == 1000 - spent


async def test_authority_duplicate_request_and_cap_at_hold(engine: AsyncEngine,
                                                           authority: MemoryAuthority | SqlAuthority) -> None:
    uid = await _user(engine, 500)
    hold = await authority.reserve(uid, "same", 100)
    with pytest.raises(Conflict):
        await authority.reserve(uid, "same", 100)
    # Usage beyond the hold is never charged beyond it.
    assert authority.settle(hold, Settlement(uid, "same", 10_000)) == 100
    await authority.drain()
    assert await authority.balance(uid) == 400 == await _ledger_sum(engine, uid)



async def test_writer_flushes_within_its_interval_after_going_idle(engine: AsyncEngine) -> None:
    """Settlements are written a flush interval after they arrive, also once the writer has gone idle (it
    used to wait for a drain, or for a full batch, before writing anything after its first batch)."""
    ledger = LedgerStore(engine)
    writer = SettlementWriter(ledger, flush_ms=5)
    uid = await _user(engine, 1000)
    written: list[int] = []
    try:
        for i in range(3):
            writer.submit(Settlement(uid, f"w{i}", 10), written.append)
            for _ in range(200):
                if len(written) > i:
                    break
                await asyncio.sleep(0.01)
            assert len(written) == i + 1, f"settlement {i} was not written within 2 s"
        assert await _ledger_sum(engine, uid) == 970
    finally:
        await writer.close()

async def test_memory_authority_picks_up_outside_credit(engine: AsyncEngine) -> None:
    ledger = LedgerStore(engine)
    writer = SettlementWriter(ledger, flush_ms=5)
    auth = MemoryAuthority(ledger, writer)
    uid = await _user(engine, 100)
    with pytest.raises(InsufficientCredits):
        await auth.reserve(uid, "big", 150)
    await ledger.add(uid, 100, "admin_credit")
    auth.credited(uid, 100)
    hold = await auth.reserve(uid, "big", 150)
    auth.release(hold)
    await writer.close()


async def test_key_store(engine: AsyncEngine) -> None:
    uid = await _user(engine, 0)
    keys = KeyStore(engine)
    now = datetime.now(UTC)
    kid = await keys.insert(user_id=uid, name="k", key_hash="a" * 64, encrypted_key="cipher", last4="abcd",
                            expires_at=None, now=now)
    rec = await keys.by_hash("a" * 64)
    assert rec is not None and rec.id == kid and rec.user_id == uid and rec.role == "user"
    assert [k.id for k in await keys.list_for_user(uid)] == [kid]
    assert await keys.deactivate(uid, kid) == "a" * 64
    assert await keys.deactivate(uid, kid) is None
    assert (await keys.by_hash("a" * 64)).is_active is False  # type: ignore[union-attr]
    with pytest.raises(IntegrityError):
        await keys.insert(user_id=uid, name="k2", key_hash="a" * 64, encrypted_key="c", last4="abcd",
                          expires_at=None, now=now)


async def test_settled_request_id_cannot_be_held_again(engine: AsyncEngine,
                                                       authority: MemoryAuthority | SqlAuthority) -> None:
    """The window between the caller's database check and the hold: a settlement that became durable in
    between must still make the request id a duplicate."""
    uid = await _user(engine, 1000)
    usage = {"endpoint": "chat.completions", "model": "m", "stream": False, "status": 200, "prompt_tokens": 1,
             "completion_tokens": 1, "cached_tokens": 0, "reasoning_tokens": 0, "latency_ms": 1.0, "attempts": 1}
    hold = await authority.reserve(uid, "once", 100)
    authority.settle(hold, Settlement(uid, "once", 10, usage=usage))
    await authority.drain()
    with pytest.raises(Conflict):
        await authority.reserve(uid, "once", 100)
    assert await authority.balance(uid) == 990


async def test_sql_authority_sweeps_holds_of_dead_workers(engine: AsyncEngine) -> None:
    """A worker that died mid-request left a hold: the running sweeper releases it once it expires."""
    ledger = LedgerStore(engine)
    writer = SettlementWriter(ledger, flush_ms=5)
    uid = await _user(engine, 100)
    assert await ledger.hold(uid, "orphan", 80, datetime.now(UTC) - timedelta(seconds=1)) == 20
    sweeper = asyncio.get_running_loop().create_task(SqlAuthority(ledger, writer, 60).sweep_forever(0.05))
    try:
        for _ in range(100):
            if await _row(engine, uid) == (100, 0):
                break
            await asyncio.sleep(0.02)
        assert await _row(engine, uid) == (100, 0)
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await writer.close()
