"""Stripe payments in SQL: payment rows, applied webhook events and each user's subscription.

Crediting a payment is one conditional UPDATE (pending -> succeeded) plus the ledger credit in the caller's
transaction, so whichever of checkout.session.completed / payment_intent.succeeded / charge.succeeded comes
first credits, and the others find the row already settled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.billing.store import PURCHASE, credit
from gatewayz.storage.schema import stripe_events, stripe_payments, stripe_subscriptions, users

REFUND = "refund"   # the ledger type of a Stripe refund (a debit)
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Settled:
    payment_id: int
    user_id: int
    kind: str
    credit_nanos: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class Refunded:
    user_id: int
    debited_nanos: int
    shortfall_nanos: int


@dataclass(frozen=True, slots=True)
class Subscription:
    user_id: int
    subscription_id: str
    customer_id: str | None
    plan: str
    status: str


class PaymentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, user_id: int, kind: str, amount_cents: int, credit_nanos: int, currency: str, *,
                     package_id: str | None = None, plan: str | None = None, status: str = "pending") -> int:
        now = _now()
        async with self._engine.begin() as conn:
            res = await conn.execute(stripe_payments.insert().values(
                user_id=user_id, kind=kind, package_id=package_id, plan=plan, amount_cents=amount_cents,
                credit_nanos=credit_nanos, currency=currency, status=status, created_at=now, updated_at=now)
                .returning(stripe_payments.c.id))
            return int(res.scalar_one())

    async def update(self, payment_id: int, **values: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(stripe_payments.update().where(stripe_payments.c.id == payment_id)
                               .values(**values, updated_at=_now()))

    async def list(self, user_id: int, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        p = stripe_payments
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(p)
                                        .where(p.c.user_id == user_id))).scalar_one()
            rows = await conn.execute(sa.select(p).where(p.c.user_id == user_id)
                                      .order_by(p.c.id.desc()).limit(limit).offset(offset))
            return [dict(r._mapping) for r in rows], int(total)

    # -- webhook events --

    async def once(self, event_id: str, event_type: str, effect: Callable[[AsyncConnection], Awaitable[T]]) \
            -> tuple[bool, T | None]:
        """Run `effect` in the transaction that records the event id: (False, None) when the event was already
        applied (a replay, or a concurrent duplicate delivery that committed first)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(stripe_events.insert().values(id=event_id, type=event_type, created_at=_now()))
                return True, await effect(conn)
        except IntegrityError:
            if await self.seen(event_id):
                return False, None
            raise

    async def claim(self, event_id: str, event_type: str) -> bool:
        """Record an event whose effect runs in other services' transactions (a plan change); `release` it if
        that effect fails so a redelivery applies it."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(stripe_events.insert().values(id=event_id, type=event_type, created_at=_now()))
            return True
        except IntegrityError:
            return False

    async def release(self, event_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(stripe_events.delete().where(stripe_events.c.id == event_id))

    async def seen(self, event_id: str) -> bool:
        async with self._engine.connect() as conn:
            q = sa.select(sa.literal(1)).where(stripe_events.c.id == event_id)
            return (await conn.execute(q)).first() is not None

    # -- effects, on the event's transaction --

    @staticmethod
    async def find(conn: AsyncConnection, *, payment_id: int | None = None, session_id: str | None = None,
                   payment_intent_id: str | None = None) -> dict[str, Any] | None:
        p = stripe_payments.c
        for col, value in ((p.id, payment_id), (p.session_id, session_id), (p.payment_intent_id, payment_intent_id)):
            if value is not None:
                row = (await conn.execute(sa.select(stripe_payments).where(col == value))).first()
                if row is not None:
                    return dict(row._mapping)
        return None

    @staticmethod
    async def settle(conn: AsyncConnection, payment_id: int, payment_intent_id: str | None) -> Settled | None:
        """Mark a pending (or failed) payment succeeded and credit a credit package as a `purchase`; None when it was
        settled before (by another of the events that report the same payment)."""
        p = stripe_payments.c
        values: dict[str, Any] = {"status": "succeeded", "updated_at": _now()}
        if payment_intent_id:
            values["payment_intent_id"] = payment_intent_id
        # A declined attempt (failed) may be followed by a successful one on the same payment intent.
        row = (await conn.execute(stripe_payments.update().where(p.id == payment_id,
                                                                 p.status.in_(("pending", "failed")))
                                  .values(**values)
                                  .returning(p.user_id, p.kind, p.credit_nanos, p.amount_cents, p.package_id))).first()
        if row is None:
            if payment_intent_id:
                await conn.execute(stripe_payments.update().where(p.id == payment_id, p.payment_intent_id.is_(None))
                                   .values(payment_intent_id=payment_intent_id))
            return None
        user_id, kind, nanos, cents, package = int(row[0]), str(row[1]), int(row[2]), int(row[3]), row[4]
        if kind == "credits" and nanos > 0:
            await credit(conn, user_id, nanos, PURCHASE, actor="stripe", request_id=f"stripe_payment:{payment_id}",
                         description=f"Stripe purchase of credit package {package}")
        return Settled(payment_id, user_id, kind, nanos, cents)

    @staticmethod
    async def close_pending(conn: AsyncConnection, payment_id: int, status: str) -> bool:
        """A session that expired, or a payment that failed, before any success was recorded."""
        p = stripe_payments.c
        res = await conn.execute(stripe_payments.update().where(p.id == payment_id, p.status == "pending")
                                 .values(status=status, updated_at=_now()))
        return res.rowcount == 1

    @staticmethod
    async def refund(conn: AsyncConnection, payment: dict[str, Any], refunded_cents: int) -> Refunded | None:
        """Debit the credits of the newly refunded part (`refunded_cents` is Stripe's running total), never below
        a zero balance: what the balance lacks is recorded on the payment as its refund shortfall."""
        p = stripe_payments.c
        before = int(payment["refunded_cents"])
        total = min(refunded_cents, int(payment["amount_cents"]))
        if total <= before:
            return None
        owed = 0
        if payment["kind"] == "credits" and payment["status"] != "pending" and payment["amount_cents"] > 0:
            owed = int(payment["credit_nanos"]) * (total - before) // int(payment["amount_cents"])
        user_id = int(payment["user_id"])
        balance = (await conn.execute(sa.select(users.c.balance_nanos).where(users.c.id == user_id)
                                      .with_for_update())).scalar_one_or_none() or 0
        take = max(0, min(int(balance), owed))
        status = "refunded" if total >= int(payment["amount_cents"]) else "partially_refunded"
        res = await conn.execute(stripe_payments.update().where(p.id == payment["id"], p.refunded_cents == before)
                                 .values(refunded_cents=total, status=status, updated_at=_now(),
                                         refund_shortfall_nanos=p.refund_shortfall_nanos + (owed - take)))
        if res.rowcount != 1:
            return None
        if take > 0:
            await credit(conn, user_id, -take, REFUND, actor="stripe",
                         request_id=f"stripe_refund:{payment['id']}:{total}",
                         description=f"Stripe refund of payment {payment['id']}"
                                     + (f" (shortfall {owed - take} nanos)" if owed > take else ""))
        return Refunded(user_id, take, owed - take)

    # -- subscriptions --

    async def subscription_of(self, user_id: int) -> Subscription | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(stripe_subscriptions)
                                      .where(stripe_subscriptions.c.user_id == user_id))).first()
        return _sub(row)

    async def by_subscription(self, subscription_id: str) -> Subscription | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(stripe_subscriptions)
                                      .where(stripe_subscriptions.c.subscription_id == subscription_id))).first()
        return _sub(row)

    async def save_subscription(self, s: Subscription) -> None:
        t = stripe_subscriptions
        async with self._engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.subscription_id == s.subscription_id, t.c.user_id != s.user_id))
            res = await conn.execute(t.update().where(t.c.user_id == s.user_id).values(
                subscription_id=s.subscription_id, customer_id=s.customer_id, plan=s.plan, status=s.status,
                updated_at=_now()))
            if res.rowcount == 0:
                await conn.execute(t.insert().values(user_id=s.user_id, subscription_id=s.subscription_id,
                                                     customer_id=s.customer_id, plan=s.plan, status=s.status,
                                                     updated_at=_now()))


def _sub(row: Any) -> Subscription | None:
    if row is None:
        return None
    m = row._mapping
    return Subscription(int(m["user_id"]), m["subscription_id"], m["customer_id"], m["plan"], m["status"])
