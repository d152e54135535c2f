"""Admin balance changes (grants, adjustments, refunds) under two caps: the most one change may move, and the
most one admin actor may move in 24 hours (the sum of the absolute amounts of its ledger rows of these types).

The cap check and the ledger row are one transaction, serialized per actor: on PostgreSQL by a transaction
advisory lock keyed by the actor, on SQLite by the database write lock (the first statement writes). A refund
of a request also holds the user's row lock while it reads what the request cost and what was refunded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.billing.store import PURCHASE, NegativeBalance, UnknownUser, credit
from gatewayz.storage.schema import credit_transactions, usage_records, users

ADMIN_CREDIT = "admin_credit"
ADJUSTMENT = "admin_adjustment"
REFUND = "refund"
BONUS = "bonus"
CAPPED_TYPES = (ADMIN_CREDIT, PURCHASE, ADJUSTMENT, REFUND, BONUS)
WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Caps:
    per_transaction: int   # nanos
    daily: int             # nanos per actor per 24 hours


class CapExceeded(Exception):
    def __init__(self, which: str, limit: int, remaining: int) -> None:
        super().__init__(which)
        self.which, self.limit, self.remaining = which, limit, remaining


class UnknownRequest(Exception):
    pass


class RefundTooLarge(Exception):
    """More than the request cost, or the request was refunded already (`refunded`; None when a concurrent
    refund's row was found by the unique constraint)."""

    def __init__(self, cost: int | None, refunded: int | None) -> None:
        super().__init__("refund too large")
        self.cost, self.refunded = cost, refunded


@dataclass(frozen=True, slots=True)
class Change:
    user_id: int
    amount: int            # signed nanos
    kind: str
    actor: str
    description: str | None = None
    request_id: str | None = None   # a refund of this request's charge


def lock_key(actor: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.blake2b(f"gatewayz-admin:{actor}".encode(), digest_size=8).digest(),
                          "big", signed=True)


async def spent_by(conn: AsyncConnection, actor: str, since: datetime) -> int:
    t = credit_transactions.c
    q = sa.select(sa.func.coalesce(sa.func.sum(sa.func.abs(t.amount_nanos)), 0)).where(
        t.actor == actor, t.type.in_(CAPPED_TYPES), t.created_at >= since)
    return int((await conn.execute(q)).scalar_one())


async def _refundable(conn: AsyncConnection, user_id: int, request_id: str) -> tuple[int, int]:
    """(what the request cost, what was already refunded of it)."""
    cost = (await conn.execute(sa.select(usage_records.c.cost_nanos).where(
        usage_records.c.user_id == user_id, usage_records.c.request_id == request_id))).scalar_one_or_none()
    if cost is None:
        raise UnknownRequest(request_id)
    t = credit_transactions.c
    refunded = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.amount_nanos), 0)).where(
        t.user_id == user_id, t.request_id == request_id, t.type == REFUND))).scalar_one()
    return int(cost), int(refunded)


async def apply_change(engine: AsyncEngine, change: Change, caps: Caps) -> int:
    """Check the caps (and, for a request's refund, its cost) and write the change; returns the new balance."""
    size = abs(change.amount)
    if size > caps.per_transaction:
        raise CapExceeded("transaction", caps.per_transaction, caps.per_transaction)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(change.actor))))
            # A no-op update: the user's row lock on PostgreSQL, the database write lock on SQLite.
            locked = await conn.execute(users.update().where(users.c.id == change.user_id)
                                        .values(balance_nanos=users.c.balance_nanos).returning(users.c.id))
            if locked.first() is None:
                raise UnknownUser(change.user_id)
            spent = await spent_by(conn, change.actor, datetime.now(UTC) - WINDOW)
            if spent + size > caps.daily:
                raise CapExceeded("daily", caps.daily, max(caps.daily - spent, 0))
            if change.request_id is not None:
                cost, refunded = await _refundable(conn, change.user_id, change.request_id)
                if refunded or change.amount > cost:
                    raise RefundTooLarge(cost, refunded)
            return await credit(conn, change.user_id, change.amount, change.kind, actor=change.actor,
                                description=change.description, request_id=change.request_id)
    except IntegrityError as exc:
        if change.request_id is not None and "unique" in str(exc.orig).lower():
            raise RefundTooLarge(None, None) from None   # a concurrent refund of the request won (belt and braces)
        raise NegativeBalance(change.user_id) from None
