"""Appends to and verifies the hash-chained audit log. Each row's hash covers its content and the previous
row's hash; appends are serialized by updating the single head row in the same transaction."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.storage.schema import audit_head, audit_log

GENESIS = "0" * 64


def row_hash(seq: int, at: datetime, actor: str, action: str, target: str | None, details: Any,
             prev_hash: str) -> str:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload = orjson.dumps([seq, stamp, actor, action, target, details, prev_hash], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(payload).hexdigest()


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, actor: str, action: str, target: str | None = None,
                     details: dict[str, Any] | None = None) -> int:
        at = datetime.now(UTC)
        async with self._engine.begin() as conn:
            # Taking the head row's lock first orders concurrent appenders (PostgreSQL row lock, SQLite's
            # write lock), so no two rows ever share a predecessor.
            head = (await conn.execute(audit_head.update().where(audit_head.c.id == 1)
                                       .values(seq=audit_head.c.seq + 1)
                                       .returning(audit_head.c.seq, audit_head.c.last_hash))).one()
            seq, prev = int(head[0]), str(head[1])
            digest = row_hash(seq, at, actor, action, target, details, prev)
            await conn.execute(audit_log.insert().values(seq=seq, at=at, actor=actor, action=action, target=target,
                                                         details=details, prev_hash=prev, hash=digest))
            await conn.execute(audit_head.update().where(audit_head.c.id == 1).values(last_hash=digest))
            return seq

    async def entries(self, limit: int, offset: int, action: str | None = None) -> tuple[list[dict[str, Any]], int]:
        where = [audit_log.c.action == action] if action else []
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log).where(*where))).scalar_one()
            rows = await conn.execute(sa.select(audit_log).where(*where).order_by(audit_log.c.seq.desc())
                                      .limit(limit).offset(offset))
            return [dict(r._mapping) for r in rows], int(total)

    async def verify(self) -> dict[str, Any]:
        """Walk the chain from the start: the first row whose hash or link does not match is reported."""
        prev, count, expected_seq = GENESIS, 0, 1
        async with self._engine.connect() as conn:
            head = (await conn.execute(sa.select(audit_head.c.seq, audit_head.c.last_hash))).one()
            result = await conn.stream(sa.select(audit_log).order_by(audit_log.c.seq))
            async for r in result:
                m = r._mapping
                if m["seq"] != expected_seq:
                    return {"valid": False, "checked": count, "broken_at": expected_seq, "reason": "row missing"}
                if m["prev_hash"] != prev:
                    return {"valid": False, "checked": count, "broken_at": m["seq"], "reason": "link broken"}
                digest = row_hash(m["seq"], m["at"], m["actor"], m["action"], m["target"], m["details"], prev)
                if digest != m["hash"]:
                    return {"valid": False, "checked": count, "broken_at": m["seq"], "reason": "row altered"}
                prev, count, expected_seq = digest, count + 1, expected_seq + 1
        if head[0] != count or head[1] != prev:
            return {"valid": False, "checked": count, "broken_at": count + 1, "reason": "rows removed at the end"}
        return {"valid": True, "checked": count, "head": prev}
