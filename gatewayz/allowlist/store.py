"""IP allowlist rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.storage.schema import ip_allowlist


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    cidr: str
    user_id: int | None
    description: str | None
    created_at: datetime

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "cidr": self.cidr, "user_id": self.user_id, "scope": "global" if self.user_id is None
                else "user", "description": self.description, "created_at": self.created_at}


def _entry(row: Any) -> Entry:
    m = row._mapping
    return Entry(id=m["id"], cidr=m["cidr"], user_id=m["user_id"], description=m["description"],
                 created_at=m["created_at"])


class AllowlistStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def all(self) -> list[Entry]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(ip_allowlist).order_by(ip_allowlist.c.id))
            return [_entry(r) for r in rows]

    async def get(self, entry_id: int) -> Entry | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(ip_allowlist).where(ip_allowlist.c.id == entry_id))).first()
        return _entry(row) if row else None

    async def insert(self, cidr: str, user_id: int | None, description: str | None, now: datetime) -> Entry:
        async with self._engine.begin() as conn:
            row = (await conn.execute(ip_allowlist.insert().values(
                cidr=cidr, user_id=user_id, description=description, created_at=now)
                .returning(*ip_allowlist.c))).one()
        return _entry(row)

    async def update(self, entry_id: int, values: dict[str, Any]) -> Entry | None:
        t = ip_allowlist
        if not values:
            return await self.get(entry_id)
        async with self._engine.begin() as conn:
            row = (await conn.execute(t.update().where(t.c.id == entry_id).values(**values).returning(*t.c))).first()
        return _entry(row) if row else None

    async def delete(self, entry_id: int) -> Entry | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(ip_allowlist.delete().where(ip_allowlist.c.id == entry_id)
                                      .returning(*ip_allowlist.c))).first()
        return _entry(row) if row else None
