"""The audit chain on SQLite and PostgreSQL: appends in order under concurrency, tampering is detected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.audit.store import AuditLog
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import audit_head, audit_log


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


async def test_chain_is_valid_under_concurrent_appends(engine: AsyncEngine) -> None:
    audit = AuditLog(engine)
    assert (await audit.verify())["valid"] and (await audit.verify())["checked"] == 0
    await asyncio.gather(*(audit.append(f"user:{i}", "key.create", f"key:{i}", {"n": i}) for i in range(20)))
    result = await audit.verify()
    assert result == {"valid": True, "checked": 20, "head": result["head"]}
    rows, total = await audit.entries(5, 0, "key.create")
    assert total == 20 and [r["seq"] for r in rows] == [20, 19, 18, 17, 16]


@pytest.mark.parametrize(("tamper", "reason"), [
    (audit_log.update().where(audit_log.c.seq == 3).values(actor="someone-else"), "row altered"),
    (audit_log.update().where(audit_log.c.seq == 4).values(details={"n": 999}), "row altered"),
    (audit_log.delete().where(audit_log.c.seq == 2), "row missing"),
    (audit_log.delete().where(audit_log.c.seq == 5), "rows removed at the end"),
])
async def test_tampering_is_detected(engine: AsyncEngine, tamper: sa.Executable, reason: str) -> None:
    audit = AuditLog(engine)
    for i in range(5):
        await audit.append("admin", "credits.add", f"user:{i}", {"n": i})
    async with engine.begin() as conn:
        await conn.execute(tamper)
    result = await audit.verify()
    assert result["valid"] is False and result["reason"] == reason


async def test_rewriting_the_whole_tail_is_still_caught_by_the_head(engine: AsyncEngine) -> None:
    audit = AuditLog(engine)
    for i in range(3):
        await audit.append("admin", "user.create", f"user:{i}")
    async with engine.begin() as conn:
        await conn.execute(audit_head.update().values(last_hash="f" * 64))
    assert (await audit.verify())["valid"] is False
