"""The plan and trial columns of a user row (writes go through billing: they change the allowance too)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.storage.schema import users


@dataclass(frozen=True, slots=True)
class PlanAccount:
    plan: str
    trial_source: str | None
    trial_started_at: datetime | None
    trial_expires_at: datetime | None


class PlanStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def account(self, user_id: int) -> PlanAccount | None:
        u = users.c
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(u.plan, u.trial_source, u.trial_started_at, u.trial_expires_at)
                                      .where(u.id == user_id))).first()
        return PlanAccount(row[0], row[1], row[2], row[3]) if row else None
