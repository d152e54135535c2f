"""Account credentials and roles (columns of `users`) and login sessions (`sessions`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.auth.roles import ADMIN
from gatewayz.storage.schema import sessions, users


class UnknownUser(Exception):
    pass


class LastAdmin(Exception):
    """The change would leave no active admin user."""


class RoleChanged(Exception):
    """The user's role changed while this change was being made; nothing was written."""


@dataclass(frozen=True, slots=True)
class Credentials:
    user_id: int
    email: str
    role: str
    is_active: bool
    password_hash: str | None


@dataclass(frozen=True, slots=True)
class SessionUser:
    session_id: int
    user_id: int
    role: str
    is_active: bool
    expires_at: datetime
    last_used_at: datetime


_CRED_COLUMNS = (users.c.id, users.c.email, users.c.role, users.c.is_active, users.c.password_hash)


def _credentials(row: sa.Row[*tuple[Any, ...]] | None) -> Credentials | None:
    return Credentials(*row) if row is not None else None


class AccountStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def by_email(self, email: str) -> Credentials | None:
        async with self._engine.connect() as conn:
            return _credentials((await conn.execute(sa.select(*_CRED_COLUMNS).where(users.c.email == email))).first())

    async def by_id(self, user_id: int) -> Credentials | None:
        async with self._engine.connect() as conn:
            return _credentials((await conn.execute(sa.select(*_CRED_COLUMNS).where(users.c.id == user_id))).first())

    async def set_password(self, user_id: int, password_hash: str, expected: str | None = None,
                           check: bool = False) -> bool:
        """Store a new hash; with `check`, only if the stored one is still `expected` (a rehash at login must
        not undo a password change made meanwhile)."""
        where = [users.c.id == user_id]
        if check:
            where.append(users.c.password_hash.is_(None) if expected is None else users.c.password_hash == expected)
        async with self._engine.begin() as conn:
            res = await conn.execute(users.update().where(*where).values(password_hash=password_hash))
            return bool(res.rowcount == 1)

    async def set_role(self, user_id: int, role: str) -> str:
        """Change a user's role; returns the previous one. Refuses (LastAdmin) to leave no active admin user.

        On PostgreSQL the admin rows are locked first, so two admins demoting each other at once are
        serialized and the second sees the first's change; on SQLite the first write takes the database's
        write lock, and the count after it is exact."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.select(users.c.id).where(users.c.role == ADMIN).order_by(users.c.id)
                               .with_for_update())
            old = (await conn.execute(sa.select(users.c.role).where(users.c.id == user_id)
                                      .with_for_update())).scalar_one_or_none()
            if old is None:
                raise UnknownUser(user_id)
            if old == role:
                return str(old)
            res = await conn.execute(users.update().where(users.c.id == user_id, users.c.role == old)
                                     .values(role=role))
            if res.rowcount != 1:
                raise RoleChanged(user_id)
            if old == ADMIN:
                left = (await conn.execute(sa.select(sa.func.count()).select_from(users).where(
                    users.c.role == ADMIN, users.c.is_active.is_(True)))).scalar_one()
                if left == 0:
                    raise LastAdmin(user_id)  # leaving the block rolls the change back
            return str(old)


class SessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, user_id: int, token_hash: str, now: datetime, expires_at: datetime) -> int:
        async with self._engine.begin() as conn:
            res = await conn.execute(sessions.insert().values(
                user_id=user_id, token_hash=token_hash, created_at=now, expires_at=expires_at, last_used_at=now)
                .returning(sessions.c.id))
            return int(res.scalar_one())

    async def lookup(self, token_hash: str, now: datetime) -> SessionUser | None:
        """The unexpired session with this token hash, with its user's current role and state."""
        q = (sa.select(sessions.c.id, sessions.c.user_id, users.c.role, users.c.is_active, sessions.c.expires_at,
                       sessions.c.last_used_at)
             .join(users, users.c.id == sessions.c.user_id)
             .where(sessions.c.token_hash == token_hash, sessions.c.expires_at > now))
        async with self._engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return SessionUser(*row) if row is not None else None

    async def touch(self, session_id: int, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sessions.update().where(sessions.c.id == session_id).values(last_used_at=now))

    async def revoke(self, token_hash: str) -> int | None:
        """Delete the session with this token hash; returns its user id, or None when there was none."""
        async with self._engine.begin() as conn:
            res = await conn.execute(sessions.delete().where(sessions.c.token_hash == token_hash)
                                     .returning(sessions.c.user_id))
            row = res.first()
        return int(row[0]) if row is not None else None

    async def revoke_user(self, user_id: int, keep: int | None = None) -> int:
        """Delete every session of a user (but `keep`); returns how many."""
        where = [sessions.c.user_id == user_id]
        if keep is not None:
            where.append(sessions.c.id != keep)
        async with self._engine.begin() as conn:
            return int((await conn.execute(sessions.delete().where(*where))).rowcount)

    async def purge_expired(self, now: datetime) -> int:
        async with self._engine.begin() as conn:
            return int((await conn.execute(sessions.delete().where(sessions.c.expires_at <= now))).rowcount)
