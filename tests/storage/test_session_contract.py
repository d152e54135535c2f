"""The session and account stores on SQLite and PostgreSQL: sessions expire, are revoked one by one or all at
once, carry the user's current role; role changes never leave no admin, even when two run at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.auth.store import AccountStore, LastAdmin, SessionStore, UnknownUser
from gatewayz.auth.tokens import new_session_token, token_hash
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import sessions, users
from gatewayz.users.store import UserStore

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


async def _user(engine: AsyncEngine, email: str, role: str = "user") -> int:
    return (await UserStore(engine).create(email, role, 0, actor="test")).id


async def test_session_lifecycle(engine: AsyncEngine) -> None:
    store = SessionStore(engine)
    uid = await _user(engine, "s@example.com", "developer")
    token = new_session_token()
    sid = await store.create(uid, token_hash(token), NOW, NOW + timedelta(hours=1))
    found = await store.lookup(token_hash(token), NOW + timedelta(minutes=59))
    assert found is not None and (found.session_id, found.user_id, found.role, found.is_active) == (
        sid, uid, "developer", True)
    assert found.expires_at == NOW + timedelta(hours=1) and found.last_used_at == NOW
    assert await store.lookup(token_hash(token), NOW + timedelta(hours=1)) is None  # expired at its deadline
    assert await store.lookup(token_hash(new_session_token()), NOW) is None

    await store.touch(sid, NOW + timedelta(minutes=5))
    touched = await store.lookup(token_hash(token), NOW)
    assert touched is not None and touched.last_used_at == NOW + timedelta(minutes=5)

    async with engine.begin() as conn:  # the role and state are read from the user, at each lookup
        await conn.execute(users.update().where(users.c.id == uid).values(role="support", is_active=False))
    changed = await store.lookup(token_hash(token), NOW)
    assert changed is not None and changed.role == "support" and changed.is_active is False

    assert await store.revoke(token_hash(token)) == uid
    assert await store.revoke(token_hash(token)) is None
    assert await store.lookup(token_hash(token), NOW) is None


async def test_token_hashes_are_unique(engine: AsyncEngine) -> None:
    store = SessionStore(engine)
    uid = await _user(engine, "u@example.com")
    h = token_hash(new_session_token())
    await store.create(uid, h, NOW, NOW + timedelta(hours=1))
    with pytest.raises(IntegrityError):
        await store.create(uid, h, NOW, NOW + timedelta(hours=1))


async def test_revoke_all_but_one_purge_and_cascade(engine: AsyncEngine) -> None:
    store = SessionStore(engine)
    a, b = await _user(engine, "a@example.com"), await _user(engine, "b@example.com")
    keep = await store.create(a, token_hash("gws_keep"), NOW, NOW + timedelta(days=1))
    for i in range(3):
        await store.create(a, token_hash(f"gws_a{i}"), NOW, NOW + timedelta(days=1))
    await store.create(b, token_hash("gws_b"), NOW, NOW + timedelta(days=1))
    await store.create(b, token_hash("gws_old"), NOW - timedelta(days=2), NOW - timedelta(days=1))
    assert await store.revoke_user(a, keep=keep) == 3
    assert (await store.lookup(token_hash("gws_keep"), NOW)) is not None
    assert await store.purge_expired(NOW) == 1
    assert await store.lookup(token_hash("gws_b"), NOW) is not None
    async with engine.begin() as conn:
        await conn.execute(users.delete().where(users.c.id == b))
        left = (await conn.execute(sa.select(sa.func.count()).select_from(sessions))).scalar_one()
    assert left == 1  # b's session went with b; a's kept one remains
    assert await store.revoke_user(a) == 1


async def test_password_hash_compare_and_set(engine: AsyncEngine) -> None:
    accounts = AccountStore(engine)
    uid = await _user(engine, "p@example.com")
    creds = await accounts.by_email("p@example.com")
    assert creds is not None and creds.user_id == uid and creds.password_hash is None
    assert await accounts.set_password(uid, "h1", None, check=True)
    assert not await accounts.set_password(uid, "h2", None, check=True)  # someone else set it first
    assert await accounts.set_password(uid, "h2", "h1", check=True)
    assert (await accounts.by_id(uid)) is not None and (await accounts.by_id(uid)).password_hash == "h2"  # type: ignore[union-attr]


async def test_roles_never_leave_no_admin(engine: AsyncEngine) -> None:
    accounts = AccountStore(engine)
    first = await _user(engine, "first@example.com", "admin")
    plain = await _user(engine, "plain@example.com")
    with pytest.raises(UnknownUser):
        await accounts.set_role(999_999, "admin")
    with pytest.raises(LastAdmin):
        await accounts.set_role(first, "support")
    assert (await accounts.by_id(first)).role == "admin"  # type: ignore[union-attr] # rolled back
    assert await accounts.set_role(plain, "admin") == "user"
    assert await accounts.set_role(plain, "admin") == "admin"  # no change
    assert await accounts.set_role(first, "support") == "admin"
    with pytest.raises(LastAdmin):
        await accounts.set_role(plain, "user")


async def test_two_admins_demoting_each_other_at_once(engine: AsyncEngine) -> None:
    """Each sees the other as an admin when it starts; exactly one may finish."""
    accounts = AccountStore(engine)
    for round_ in range(5):
        a = await _user(engine, f"a{round_}@example.com", "admin")
        b = await _user(engine, f"b{round_}@example.com", "admin")
        results = await asyncio.gather(accounts.set_role(a, "user"), accounts.set_role(b, "user"),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["LastAdmin", "str"], results
        async with engine.connect() as conn:
            admins = (await conn.execute(sa.select(sa.func.count()).select_from(users)
                                         .where(users.c.role == "admin"))).scalar_one()
        assert admins == 1
        async with engine.begin() as conn:  # start the next round with no admin
            await conn.execute(users.update().where(users.c.role == "admin").values(role="user"))
