"""Coupon rows. A redemption is one transaction: the coupon's count, the redemption row and the ledger credit
commit together or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.billing.store import credit
from gatewayz.storage.schema import coupon_redemptions, coupons

COUPON = "coupon"   # the ledger type of a redemption


class DuplicateCode(Exception):
    pass


class _Refused(Exception):
    """Rolls back a redemption that took the count but finds the user at their limit."""


@dataclass(frozen=True, slots=True)
class Coupon:
    id: int
    code: str
    amount_nanos: int
    description: str | None
    user_id: int | None
    max_redemptions: int | None
    per_user_limit: int
    redemptions: int
    listed: bool
    is_active: bool
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Redeemed:
    code: str
    amount_nanos: int
    seq: int             # the user's n-th redemption of this coupon
    balance_after: int   # the balance in the database right after the credit
    at: datetime


def _coupon(row: Any) -> Coupon:
    m = row._mapping
    return Coupon(**{f: m[f] for f in Coupon.__slots__})


async def _used(conn: AsyncConnection, coupon_id: int, user_id: int) -> int:
    r = coupon_redemptions
    q = sa.select(sa.func.count()).select_from(r).where(r.c.coupon_id == coupon_id, r.c.user_id == user_id)
    return int((await conn.execute(q)).scalar_one())


class CouponStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, code: str, amount_nanos: int, *, description: str | None, user_id: int | None,
                     max_redemptions: int | None, per_user_limit: int, listed: bool,
                     expires_at: datetime | None, now: datetime) -> Coupon:
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(coupons.insert().values(
                    code=code, amount_nanos=amount_nanos, description=description, user_id=user_id,
                    max_redemptions=max_redemptions, per_user_limit=per_user_limit, redemptions=0, listed=listed,
                    is_active=True, expires_at=expires_at, created_at=now).returning(*coupons.c))).one()
        except IntegrityError:
            raise DuplicateCode(code) from None
        return _coupon(row)

    async def get(self, code: str) -> Coupon | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(coupons).where(coupons.c.code == code))).first()
        return _coupon(row) if row else None

    async def used(self, coupon_id: int, user_id: int) -> int:
        async with self._engine.connect() as conn:
            return await _used(conn, coupon_id, user_id)

    async def listing(self, limit: int, offset: int, active: bool | None) -> tuple[list[Coupon], int]:
        where = [] if active is None else [coupons.c.is_active == active]
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(coupons).where(*where))).scalar_one()
            rows = await conn.execute(sa.select(coupons).where(*where).order_by(coupons.c.id.desc())
                                      .limit(limit).offset(offset))
            return [_coupon(r) for r in rows], int(total)

    async def deactivate(self, code: str) -> Coupon | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(coupons.update().where(coupons.c.code == code).values(is_active=False)
                                      .returning(*coupons.c))).first()
        return _coupon(row) if row else None

    async def redeem(self, code: str, user_id: int, now: datetime) -> Redeemed | None:
        """Redeem for `user_id`, or None when the coupon cannot be redeemed by them now (nothing written).

        The conditional UPDATE comes first: it takes the coupon row's lock (PostgreSQL) or the write lock
        (SQLite), so concurrent redeemers of one coupon queue there, and the per-user count read after it
        sees every redemption committed before. The unique (coupon, user, seq) backs the per-user limit."""
        c = coupons
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(
                    c.update().where(c.c.code == code, c.c.is_active,
                                     sa.or_(c.c.expires_at.is_(None), c.c.expires_at > now),
                                     sa.or_(c.c.max_redemptions.is_(None), c.c.redemptions < c.c.max_redemptions),
                                     sa.or_(c.c.user_id.is_(None), c.c.user_id == user_id))
                    .values(redemptions=c.c.redemptions + 1)
                    .returning(c.c.id, c.c.amount_nanos, c.c.per_user_limit))).first()
                if row is None:
                    return None
                coupon_id, amount, per_user = int(row[0]), int(row[1]), int(row[2])
                seq = await _used(conn, coupon_id, user_id) + 1
                if seq > per_user:
                    raise _Refused
                await conn.execute(coupon_redemptions.insert().values(
                    coupon_id=coupon_id, user_id=user_id, seq=seq, amount_nanos=amount, created_at=now))
                after = await credit(conn, user_id, amount, COUPON, actor=f"user:{user_id}",
                                     description=f"Coupon {code}", request_id=f"coupon:{code}:{seq}")
                return Redeemed(code, amount, seq, after, now)
        except (_Refused, IntegrityError):
            return None

    async def available(self, user_id: int, now: datetime, limit: int) -> list[tuple[Coupon, int]]:
        """Active coupons `user_id` can redeem now, with how many times they have: listed global ones and
        the ones made for them (never another user's)."""
        c, r = coupons, coupon_redemptions
        used = (sa.select(sa.func.count()).select_from(r).where(r.c.coupon_id == c.c.id, r.c.user_id == user_id)
                .scalar_subquery())
        q = (sa.select(c, used.label("used"))
             .where(c.c.is_active, sa.or_(c.c.expires_at.is_(None), c.c.expires_at > now),
                    sa.or_(c.c.max_redemptions.is_(None), c.c.redemptions < c.c.max_redemptions),
                    sa.or_(sa.and_(c.c.user_id.is_(None), c.c.listed), c.c.user_id == user_id),
                    used < c.c.per_user_limit)
             .order_by(c.c.id.desc()).limit(limit))
        async with self._engine.connect() as conn:
            return [(_coupon(row), int(row._mapping["used"])) for row in await conn.execute(q)]

    async def history(self, user_id: int, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        c, r = coupons, coupon_redemptions
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(r)
                                        .where(r.c.user_id == user_id))).scalar_one()
            rows = await conn.execute(
                sa.select(c.c.code, c.c.description, r.c.amount_nanos, r.c.seq, r.c.created_at)
                .join_from(r, c, r.c.coupon_id == c.c.id).where(r.c.user_id == user_id)
                .order_by(r.c.id.desc()).limit(limit).offset(offset))
            return [dict(x._mapping) for x in rows], int(total)
