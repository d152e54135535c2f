"""API key rows: insert, look up by HMAC hash, list, deactivate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.storage.schema import api_keys, users

RESTRICTION_COLUMNS = ("allowed_models", "scopes", "allowed_ips", "allowed_referrers", "rpm_limit", "tpm_limit",
                       "daily_spend_limit_nanos")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    user_id: int
    name: str
    last4: str
    is_active: bool
    expires_at: datetime | None
    created_at: datetime
    role: str = "user"
    user_active: bool = True
    restrictions: dict[str, Any] | None = None
    plan: str = "free"
    trial_source: str | None = None
    trial_expires_at: datetime | None = None


def _record(row: sa.Row[*tuple[Any, ...]]) -> KeyRecord:
    m = row._mapping
    return KeyRecord(id=m["id"], user_id=m["user_id"], name=m["name"], last4=m["last4"],
                     is_active=m["is_active"], expires_at=m["expires_at"], created_at=m["created_at"],
                     role=m.get("role", "user"), user_active=m.get("user_active", True),
                     restrictions={c: m.get(c) for c in RESTRICTION_COLUMNS}, plan=m.get("plan", "free"),
                     trial_source=m.get("trial_source"), trial_expires_at=m.get("trial_expires_at"))


_KEY_COLUMNS = (api_keys.c.id, api_keys.c.user_id, api_keys.c.name, api_keys.c.last4, api_keys.c.is_active,
                api_keys.c.expires_at, api_keys.c.created_at, *(api_keys.c[c] for c in RESTRICTION_COLUMNS))


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, *, user_id: int, name: str, key_hash: str, encrypted_key: str, last4: str,
                     expires_at: datetime | None, now: datetime, restrictions: dict[str, Any] | None = None,
                     replaces: int | None = None) -> int:
        """Insert a key; with `replaces`, deactivate that key of the same user in the same transaction."""
        async with self._engine.begin() as conn:
            res = await conn.execute(api_keys.insert().values(
                user_id=user_id, name=name, key_hash=key_hash, encrypted_key=encrypted_key, last4=last4,
                expires_at=expires_at, created_at=now, is_active=True, **(restrictions or {}))
                .returning(api_keys.c.id))
            key_id = int(res.scalar_one())
            if replaces is not None:
                await conn.execute(api_keys.update().where(api_keys.c.id == replaces, api_keys.c.user_id == user_id)
                                   .values(is_active=False))
            return key_id

    async def get(self, user_id: int, key_id: int) -> KeyRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(*_KEY_COLUMNS).where(
                api_keys.c.id == key_id, api_keys.c.user_id == user_id, api_keys.c.is_active.is_(True)))).first()
        return _record(row) if row else None

    async def update(self, user_id: int, key_id: int, values: dict[str, Any]) -> bool:
        async with self._engine.begin() as conn:
            mine = (api_keys.c.id == key_id) & (api_keys.c.user_id == user_id) & api_keys.c.is_active.is_(True)
            res = await conn.execute(api_keys.update().where(mine).values(**values))
            return bool(res.rowcount == 1)

    async def by_hash(self, key_hash: str) -> KeyRecord | None:
        q = (sa.select(*_KEY_COLUMNS, users.c.role, users.c.is_active.label("user_active"), users.c.plan,
                       users.c.trial_source, users.c.trial_expires_at)
             .join(users, users.c.id == api_keys.c.user_id).where(api_keys.c.key_hash == key_hash))
        async with self._engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return _record(row) if row else None

    async def list_for_user(self, user_id: int) -> list[KeyRecord]:
        q = (sa.select(*_KEY_COLUMNS)
             .where(api_keys.c.user_id == user_id, api_keys.c.is_active.is_(True)).order_by(api_keys.c.id))
        async with self._engine.connect() as conn:
            return [_record(r) for r in await conn.execute(q)]

    async def deactivate(self, user_id: int, key_id: int) -> str | None:
        """Deactivate one of the user's keys; returns its lookup hash (for cache eviction) or None."""
        async with self._engine.begin() as conn:
            res = await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id, api_keys.c.user_id == user_id,
                                        api_keys.c.is_active.is_(True))
                .values(is_active=False).returning(api_keys.c.key_hash))
            row = res.first()
        return row[0] if row else None
