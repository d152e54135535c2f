"""Referral codes, who applied which, and the bonus paid once per referee in one transaction with its
ledger rows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.billing.store import PURCHASE, credit
from gatewayz.storage.schema import credit_transactions, referral_codes, referrals, users

REFERRAL = "referral"   # the ledger type of a bonus
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"   # no 0/O, 1/I: read aloud or typed without mistakes
CODE_LENGTH = 8


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


class _Refused(Exception):
    """Rolls back an application that took a use of the code but may not stand."""


@dataclass(frozen=True, slots=True)
class ReferralCode:
    code: str
    user_id: int
    uses: int    # users who applied it


async def _exists(conn: AsyncConnection, q: sa.Select[Any]) -> bool:
    return (await conn.execute(q.limit(1))).first() is not None


def _purchased(user_id: int) -> sa.Select[Any]:
    t = credit_transactions
    return sa.select(sa.literal(1)).where(t.c.user_id == user_id, t.c.type == PURCHASE)


def _referred(referee_id: int, referrer_id: int) -> sa.Select[Any]:
    return sa.select(sa.literal(1)).where(referrals.c.referee_id == referee_id,
                                          referrals.c.referrer_id == referrer_id)


class ReferralStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _code_where(self, where: sa.ColumnElement[bool]) -> ReferralCode | None:
        r = referral_codes
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(r.c.code, r.c.user_id, r.c.uses).where(where))).first()
        return ReferralCode(str(row[0]), int(row[1]), int(row[2])) if row else None

    async def code_of(self, user_id: int) -> ReferralCode | None:
        return await self._code_where(referral_codes.c.user_id == user_id)

    async def by_code(self, code: str) -> ReferralCode | None:
        return await self._code_where(referral_codes.c.code == code)

    async def ensure_code(self, user_id: int, now: datetime, attempts: int = 5) -> ReferralCode:
        """The user's code, created on first call (a random code colliding with another is drawn again; two
        first calls at once agree on the one that was inserted first)."""
        for _ in range(attempts):
            existing = await self.code_of(user_id)
            if existing is not None:
                return existing
            code = new_code()
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(referral_codes.insert().values(user_id=user_id, code=code, uses=0,
                                                                      created_at=now))
                return ReferralCode(code, user_id, 0)
            except IntegrityError:
                continue
        raise RuntimeError(f"could not create a referral code for user {user_id} in {attempts} attempts")

    async def referral_of(self, referee_id: int) -> dict[str, Any] | None:
        """How `referee_id` was referred (code, referrer, reward), if they were."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(referrals).where(referrals.c.referee_id == referee_id))).first()
        return dict(row._mapping) if row else None

    async def has_purchased(self, user_id: int) -> bool:
        async with self._engine.connect() as conn:
            return await _exists(conn, _purchased(user_id))

    async def is_referred_by(self, referee_id: int, referrer_id: int) -> bool:
        async with self._engine.connect() as conn:
            return await _exists(conn, _referred(referee_id, referrer_id))

    async def apply(self, referee_id: int, code: str, max_uses: int, now: datetime) -> int | None:
        """Record that `referee_id` was referred with `code`; returns the referrer, or None when it may not
        be (nothing written). Taking a use of the code first locks its row, so its uses never pass
        max_uses; the referee primary key makes a second application fail."""
        r = referral_codes
        try:
            async with self._engine.begin() as conn:
                referrer = (await conn.execute(
                    r.update().where(r.c.code == code, r.c.uses < max_uses, r.c.user_id != referee_id)
                    .values(uses=r.c.uses + 1).returning(r.c.user_id))).scalar_one_or_none()
                if referrer is None:
                    return None
                # Only before a first purchase, and never both ways between two users.
                if await _exists(conn, _purchased(referee_id)) or await _exists(conn, _referred(referrer, referee_id)):
                    raise _Refused
                await conn.execute(referrals.insert().values(referee_id=referee_id, referrer_id=referrer, code=code,
                                                             created_at=now))
                return int(referrer)
        except (_Refused, IntegrityError):
            return None

    async def reward(self, referee_id: int, purchase_nanos: int, bonus_nanos: int, now: datetime) -> int | None:
        """Pay both sides once: returns the referrer when this call paid, None when there is nothing to pay
        (no referral, or already paid). The ledger rows share a reference, `referral:<referee id>`, that the
        ledger's unique (user, reference, type) also keeps to one each."""
        t = referrals
        async with self._engine.begin() as conn:
            referrer = (await conn.execute(
                t.update().where(t.c.referee_id == referee_id, t.c.rewarded_at.is_(None))
                .values(rewarded_at=now, purchase_nanos=purchase_nanos, bonus_nanos=bonus_nanos)
                .returning(t.c.referrer_id))).scalar_one_or_none()
            if referrer is None:
                return None
            # Both balances in user id order, so two bonuses touching the same users cannot deadlock.
            for user_id in sorted((referee_id, int(referrer))):
                why = "your first purchase" if user_id == referee_id else "a user you referred made a first purchase"
                await credit(conn, user_id, bonus_nanos, REFERRAL, actor="system",
                             description=f"Referral bonus: {why}", request_id=f"referral:{referee_id}")
            return int(referrer)

    async def referees(self, referrer_id: int) -> list[dict[str, Any]]:
        t = referrals
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(users.c.email, t.c.created_at, t.c.rewarded_at, t.c.bonus_nanos)
                .join_from(t, users, users.c.id == t.c.referee_id).where(t.c.referrer_id == referrer_id)
                .order_by(t.c.created_at.desc()))
            return [dict(x._mapping) for x in rows]
