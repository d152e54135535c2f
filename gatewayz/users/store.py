"""User rows. A user created with credits gets the ledger row for them in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.storage.schema import credit_transactions, users

ROLES = ("admin", "developer", "support", "user")


class EmailTaken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    role: str
    is_active: bool
    balance_nanos: int
    created_at: datetime


def _user(row: sa.Row[*tuple[Any, ...]]) -> User:
    m = row._mapping
    return User(id=m["id"], email=m["email"], role=m["role"], is_active=m["is_active"],
                balance_nanos=m["balance_nanos"], created_at=m["created_at"])


class UserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, email: str, role: str, credits_nanos: int, actor: str | None,
                     password_hash: str | None = None) -> User:
        now = datetime.now(UTC)
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(users.insert().values(
                    email=email, role=role, balance_nanos=credits_nanos, created_at=now, is_active=True,
                    password_hash=password_hash)
                    .returning(*users.c))).one()
                if credits_nanos:
                    await conn.execute(credit_transactions.insert().values(
                        user_id=row.id, type="admin_credit", amount_nanos=credits_nanos,
                        balance_after_nanos=credits_nanos, description="opening credits", actor=actor,
                        created_at=now))
        except IntegrityError:
            raise EmailTaken(email) from None
        return _user(row)

    async def get(self, user_id: int) -> User | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return _user(row) if row else None

    async def list(self, limit: int, offset: int) -> tuple[list[User], int]:
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one()
            rows = await conn.execute(sa.select(users).order_by(users.c.id).limit(limit).offset(offset))
            return [_user(r) for r in rows], int(total)
