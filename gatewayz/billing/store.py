"""The credit ledger in SQL. Every balance change writes its ledger row in the same transaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.billing.allowance import Funds, PeriodPolicy, Reset, change_account, reset_in
from gatewayz.storage.db import create_sync_engine
from gatewayz.storage.schema import credit_holds, credit_transactions, usage_records, users

USAGE = "api_usage"
PURCHASE = "purchase"   # money paid in; the first large enough one pays a pending referral bonus


@dataclass(slots=True)
class Settlement:
    """What one finished request owes, plus its usage record (written in the same transaction)."""

    user_id: int
    request_id: str
    cost_nanos: int
    hold_nanos: int = 0
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    from_allowance: int = 0   # set when written: the part of the charge paid from the allowance


class UnknownUser(Exception):
    pass


class DuplicateHold(Exception):
    """The request id was already settled (its transaction is rolled back)."""


class NegativeBalance(Exception):
    pass


@dataclass(slots=True)
class _SqliteWriter:
    engine: Engine
    executor: ThreadPoolExecutor


class LedgerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite: _SqliteWriter | None = None
        if engine.dialect.name == "sqlite":
            self._sqlite = _SqliteWriter(create_sync_engine(engine.url),
                                         ThreadPoolExecutor(1, thread_name_prefix="gatewayz-settle"))

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.executor.shutdown(wait=True)
            self._sqlite.engine.dispose()

    async def balance(self, user_id: int) -> int | None:
        async with self._engine.connect() as conn:
            res = await conn.execute(sa.select(users.c.balance_nanos).where(users.c.id == user_id))
            return res.scalar_one_or_none()

    async def balances(self, user_id: int) -> tuple[int, int] | None:
        """(balance, held) for the database credit authority."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(users.c.balance_nanos, users.c.held_nanos)
                                      .where(users.c.id == user_id))).first()
            return (row[0], row[1]) if row else None

    async def funds(self, user_id: int) -> Funds | None:
        u = users.c
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(u.balance_nanos, u.allowance_nanos, u.held_nanos, u.allowance_period)
                                      .where(u.id == user_id))).first()
        return Funds(int(row[0]), int(row[1]), int(row[2]), row[3]) if row else None

    async def reset_allowance(self, user_id: int, policy: PeriodPolicy, in_flight: int = 0, *,
                              changes: dict[str, Any] | None = None,
                              require: list[sa.ColumnElement[bool]] | None = None) -> Reset | None:
        """Bring the user's allowance to the policy's period (see billing.allowance), first applying
        `changes` (a plan, a trial) when `require` holds, all in one transaction. `in_flight` is what this
        process holds outside the database. None when the user is unknown or `require` failed."""
        async with self._engine.begin() as conn:
            if changes and not await change_account(conn, user_id, changes, require or []):
                return None
            return await reset_in(conn, user_id, policy, in_flight, _now())

    async def spent_since(self, user_id: int, since: datetime, key_id: int | None = None) -> int:
        """What the user (or one of its keys) was charged since `since`, from the usage records."""
        u = usage_records.c
        q = sa.select(sa.func.coalesce(sa.func.sum(u.cost_nanos), 0)).where(u.user_id == user_id,
                                                                              u.created_at >= since)
        if key_id is not None:
            q = q.where(u.api_key_id == key_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def add(self, user_id: int, amount_nanos: int, kind: str, *, actor: str | None = None,
                  description: str | None = None, request_id: str | None = None) -> int:
        """Credit (or, negative, debit) a balance with its ledger row; returns the new balance."""
        try:
            async with self._engine.begin() as conn:
                return await credit(conn, user_id, amount_nanos, kind, actor=actor, description=description,
                                    request_id=request_id)
        except IntegrityError as exc:
            if "balance" in str(exc.orig).lower() or "check" in str(exc.orig).lower():
                raise NegativeBalance(user_id) from None
            raise

    async def charged(self, user_id: int, request_id: str) -> bool:
        q = sa.select(sa.literal(1)).where(credit_transactions.c.user_id == user_id,
                                           credit_transactions.c.request_id == request_id,
                                           credit_transactions.c.type == USAGE)
        async with self._engine.connect() as conn:
            if (await conn.execute(q)).first() is not None:
                return True
            q2 = sa.select(sa.literal(1)).where(usage_records.c.user_id == user_id,
                                                usage_records.c.request_id == request_id)
            return (await conn.execute(q2)).first() is not None

    async def apply(self, items: list[Settlement]) -> list[int]:
        """Write a batch of settlements in one transaction; returns the nanos actually charged per item.

        One UPDATE per user and two multi-row INSERTs. If the batch collides with an existing row (a request
        id already settled), it is redone one item at a time, skipping the duplicates. On SQLite the whole
        batch runs in one call to a dedicated thread with its own connection: through the async driver each
        statement is a thread round trip, which costs more CPU than the writes themselves."""
        if self._sqlite is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._sqlite.executor, _apply_with_retry, self._sqlite.engine, items)

        async with self._engine.connect() as conn:
            return await conn.run_sync(lambda sync_conn: _apply_with_retry(sync_conn, items))

    # -- holds for the database credit authority (several workers sharing one database) --

    async def hold(self, user_id: int, request_id: str, amount: int, expires_at: datetime,
                   period: str | None = None) -> int | None:
        """Take a hold atomically against balance + allowance; returns what is still available after it, or
        None when that is short (or, given `period`, when the allowance belongs to another period). Raises
        IntegrityError on a duplicate (user, request id)."""
        u = users.c
        available = u.balance_nanos + u.allowance_nanos - u.held_nanos
        where = [u.id == user_id, available >= amount]
        if period is not None:
            where.append(u.allowance_period == period)
        async with self._engine.begin() as conn:
            res = await conn.execute(
                users.update().where(*where).values(held_nanos=u.held_nanos + amount)
                .returning(u.balance_nanos + u.allowance_nanos - u.held_nanos))
            remaining = res.scalar_one_or_none()
            if remaining is None:
                return None
            await conn.execute(credit_holds.insert().values(user_id=user_id, request_id=request_id,
                                                            amount_nanos=amount, expires_at=expires_at))
            # A request id whose settlement committed after the caller's own check is a duplicate too.
            settled = await conn.execute(sa.select(sa.literal(1)).where(
                usage_records.c.user_id == user_id, usage_records.c.request_id == request_id))
            if settled.first() is not None:
                raise DuplicateHold(request_id)
            return int(remaining)

    async def release(self, user_id: int, request_id: str) -> None:
        async with self._engine.begin() as conn:
            await _drop_hold(conn, user_id, request_id)

    async def settle_hold(self, item: Settlement) -> int:
        """Release the hold and apply the charge in one transaction; returns the nanos charged."""
        try:
            async with self._engine.begin() as conn:
                await _drop_hold(conn, item.user_id, item.request_id)
                return (await conn.run_sync(lambda c: _apply_batch(c, [item])))[0]
        except IntegrityError:
            item.from_allowance = 0
            await self.release(item.user_id, item.request_id)
            return 0

    async def sweep_expired_holds(self, now: datetime | None = None) -> int:
        """Release holds whose request died with its worker."""
        now = now or _now()
        async with self._engine.connect() as conn:
            stale = (await conn.execute(sa.select(credit_holds.c.user_id, credit_holds.c.request_id)
                                        .where(credit_holds.c.expires_at < now))).all()
        for user_id, request_id in stale:
            await self.release(user_id, request_id)
        return len(stale)

    async def usage_record(self, user_id: int, request_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(usage_records).where(usage_records.c.user_id == user_id,
                                                                     usage_records.c.request_id == request_id))).first()
        return dict(row._mapping) if row else None

    async def transactions(self, user_id: int, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        t = credit_transactions
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(t)
                                        .where(t.c.user_id == user_id))).scalar_one()
            rows = await conn.execute(sa.select(t).where(t.c.user_id == user_id)
                                      .order_by(t.c.id.desc()).limit(limit).offset(offset))
            return [dict(r._mapping) for r in rows], int(total)


async def credit(conn: AsyncConnection, user_id: int, amount_nanos: int, kind: str, *, actor: str | None = None,
                 description: str | None = None, request_id: str | None = None) -> int:
    """The balance change and its ledger row on the caller's transaction, so other writes (a coupon's
    redemption count, say) commit or roll back with them; returns the new balance. The caller tells the
    credit authority (`CreditAuthority.credited`) once its transaction has committed."""
    res = await conn.execute(users.update().where(users.c.id == user_id)
                             .values(balance_nanos=users.c.balance_nanos + amount_nanos)
                             .returning(users.c.balance_nanos, users.c.allowance_nanos))
    row = res.first()
    if row is None:
        raise UnknownUser(user_id)
    after = row[0]
    await conn.execute(credit_transactions.insert().values(
        user_id=user_id, type=kind, amount_nanos=amount_nanos, balance_after_nanos=after,
        allowance_after_nanos=row[1], request_id=request_id, description=description, actor=actor,
        created_at=_now()))
    return int(after)


def _apply_with_retry(target: Engine | Connection, items: list[Settlement]) -> list[int]:
    """Run in a worker thread (SQLite) or through run_sync (PostgreSQL): plain synchronous SQLAlchemy."""
    try:
        with _begin(target) as conn:
            return _apply_batch(conn, items)
    except IntegrityError:
        charged = []
        for item in items:
            try:
                with _begin(target) as conn:
                    charged.extend(_apply_batch(conn, [item]))
            except IntegrityError:
                item.from_allowance = 0
                charged.append(0)  # already settled once: never twice
        return charged


@contextlib.contextmanager
def _begin(target: Engine | Connection) -> Iterator[Connection]:
    if isinstance(target, Engine):
        with target.begin() as conn:
            yield conn
    else:
        with target.begin():
            yield target


def _apply_batch(conn: Connection, items: list[Settlement]) -> list[int]:
    now = _now()
    per_user: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        item.from_allowance = 0   # this attempt decides it (a batch redone item by item sets it again)
        if item.cost_nanos > 0:
            per_user[item.user_id].append(i)
    charged = [0] * len(items)
    ledger_rows = []
    for user_id, idxs in per_user.items():
        # A no-op UPDATE takes the row's write lock first (PostgreSQL row lock, SQLite write lock), so the
        # read and the write below cannot interleave with another writer.
        row = conn.execute(users.update().where(users.c.id == user_id).values(balance_nanos=users.c.balance_nanos)
                           .returning(users.c.balance_nanos, users.c.held_nanos, users.c.allowance_nanos)).first()
        if row is None:
            continue
        balance, held, allowance = int(row[0]), int(row[1]), int(row[2])
        for i in idxs:
            it = items[i]
            # Never below zero, never into other requests' holds: usage beyond the hold is capped.
            charged[i] = min(it.cost_nanos, max(balance + allowance - held, 0))
            # The allowance pays first; purchased credits only for the rest.
            it.from_allowance = min(charged[i], allowance)
            allowance -= it.from_allowance
            balance -= charged[i] - it.from_allowance
            ledger_rows.append({"user_id": user_id, "type": USAGE, "amount_nanos": -(charged[i] - it.from_allowance),
                                "balance_after_nanos": balance, "allowance_nanos": -it.from_allowance,
                                "allowance_after_nanos": allowance, "request_id": it.request_id, "model": it.model,
                                "prompt_tokens": it.prompt_tokens, "completion_tokens": it.completion_tokens,
                                "description": None, "actor": None, "created_at": now})
        conn.execute(users.update().where(users.c.id == user_id).values(balance_nanos=balance,
                                                                          allowance_nanos=allowance))
    if ledger_rows:
        conn.execute(credit_transactions.insert(), ledger_rows)
    usage_rows = [dict(item.usage, user_id=item.user_id, request_id=item.request_id, cost_nanos=charged[i],
                       created_at=item.usage.get("created_at", now))
                  for i, item in enumerate(items) if item.usage]
    if usage_rows:
        conn.execute(usage_records.insert(), usage_rows)
    return charged


async def _drop_hold(conn: AsyncConnection, user_id: int, request_id: str) -> None:
    res = await conn.execute(credit_holds.delete().where(credit_holds.c.user_id == user_id,
                                                         credit_holds.c.request_id == request_id)
                             .returning(credit_holds.c.amount_nanos))
    amount = res.scalar_one_or_none()
    if amount:
        await conn.execute(users.update().where(users.c.id == user_id)
                           .values(held_nanos=users.c.held_nanos - amount))


def _now() -> datetime:
    return datetime.now(UTC)
