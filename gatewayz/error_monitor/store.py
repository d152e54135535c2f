"""Error events and patterns in SQL (SQLite and PostgreSQL): a batch is one transaction that inserts the
events and upserts their patterns (count += n), so every worker adds to the same counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.error_monitor.events import CLASSES, ErrorEvent
from gatewayz.monitoring.sql import reading
from gatewayz.storage.schema import error_events, error_patterns

E, P = error_events, error_patterns
PATTERN_ID = P.c.id.label("pattern_id")


def _patterns_of(events: Sequence[ErrorEvent]) -> list[dict[str, Any]]:
    """One row per fingerprint in the batch: how many, first and last time, the latest message."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        p = out.get(e.fingerprint)
        if p is None:
            out[e.fingerprint] = {"fingerprint": e.fingerprint, "error_class": e.error_class, "code": e.code,
                                  "provider": e.provider, "model": e.model, "message": e.pattern,
                                  "sample_message": e.message, "count": 1, "first_seen": e.at, "last_seen": e.at,
                                  "status": "open", "reopened": 0}
            continue
        p["count"] += 1
        p["first_seen"] = min(p["first_seen"], e.at)
        if e.at >= p["last_seen"]:
            p["last_seen"], p["sample_message"] = e.at, e.message
    return list(out.values())


def event_json(row: Any) -> dict[str, Any]:
    r = dict(row._mapping)
    r["class"] = r.pop("error_class")
    return r


def pattern_json(row: Any) -> dict[str, Any]:
    r = dict(row._mapping)
    r["class"] = r.pop("error_class")
    r["count"] = int(r["count"])
    return r


class ErrorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    def _upsert(self) -> Any:
        stmt = self._insert(P)
        ex = stmt.excluded
        newer = ex.last_seen > P.c.last_seen
        # An occurrence after the resolution reopens the pattern (one flushed late, from before it, does not).
        reopen = sa.and_(P.c.status == "resolved", ex.last_seen > P.c.resolved_at)
        return stmt.on_conflict_do_update(index_elements=[P.c.fingerprint], set_={
            "count": P.c.count + ex.count,
            "first_seen": sa.case((ex.first_seen < P.c.first_seen, ex.first_seen), else_=P.c.first_seen),
            "last_seen": sa.case((newer, ex.last_seen), else_=P.c.last_seen),
            "sample_message": sa.case((newer, ex.sample_message), else_=P.c.sample_message),
            "status": sa.case((reopen, "open"), else_=P.c.status),
            "reopened": P.c.reopened + sa.case((reopen, 1), else_=0),
        })

    async def write(self, events: Sequence[ErrorEvent], per_pattern: int | None = None) -> int:
        """Insert the events (at most `per_pattern` of each fingerprint, the latest) and add every one of them
        to its pattern's count. Returns how many events were left out."""
        if not events:
            return 0
        rows = events
        if per_pattern is not None:
            kept: dict[str, int] = {}
            rows = []
            for e in reversed(events):
                if kept.get(e.fingerprint, 0) < per_pattern:
                    kept[e.fingerprint] = kept.get(e.fingerprint, 0) + 1
                    rows.append(e)
            rows.reverse()
        async with self._engine.begin() as conn:
            await conn.execute(E.insert(), [e.row() for e in rows])
            await conn.execute(self._upsert(), _patterns_of(events))
        return len(events) - len(rows)

    async def purge(self, cutoff: datetime) -> int:
        async with self._engine.begin() as conn:
            return int((await conn.execute(E.delete().where(E.c.at < cutoff))).rowcount or 0)

    # ---- reading ------------------------------------------------------------------------------------------

    async def recent(self, limit: int, offset: int = 0, *, critical: bool = False,
                     filters: dict[str, str | None] | None = None) -> tuple[list[dict[str, Any]], int]:
        """Newest first, with the id of each event's pattern."""
        where: list[sa.ColumnElement[bool]] = [E.c.critical.is_(True)] if critical else []
        for name, value in (filters or {}).items():
            if value is not None:
                where.append(E.c[name] == value)
        q = sa.select(*E.c, PATTERN_ID).select_from(E.outerjoin(P, P.c.fingerprint == E.c.fingerprint)) \
            .where(*where).order_by(E.c.at.desc(), E.c.id.desc()).limit(limit).offset(offset)
        async with reading(self._engine) as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(E).where(*where))).scalar_one()
            return [event_json(r) for r in await conn.execute(q)], int(total)

    async def patterns(self, limit: int, offset: int, *, min_count: int = 1, since: datetime | None = None,
                       status: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Most frequent first."""
        where: list[sa.ColumnElement[bool]] = [P.c.count >= min_count]
        if since is not None:
            where.append(P.c.last_seen >= since)
        if status is not None:
            where.append(P.c.status == status)
        q = sa.select(P).where(*where).order_by(P.c.count.desc(), P.c.last_seen.desc(), P.c.id).limit(limit) \
            .offset(offset)
        async with reading(self._engine) as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(P).where(*where))).scalar_one()
            return [pattern_json(r) for r in await conn.execute(q)], int(total)

    async def pattern(self, pattern_id: int) -> dict[str, Any] | None:
        async with reading(self._engine) as conn:
            row = (await conn.execute(sa.select(P).where(P.c.id == pattern_id))).first()
            return pattern_json(row) if row is not None else None

    async def resolve_pattern(self, pattern_id: int, note: str, actor: str, at: datetime) -> bool:
        """Open -> resolved, in one conditional update; False when it is not open (or does not exist)."""
        async with self._engine.begin() as conn:
            res = await conn.execute(P.update().where(P.c.id == pattern_id, P.c.status == "open").values(
                status="resolved", resolved_at=at, resolved_by=actor, resolution_note=note))
            return bool(res.rowcount)

    async def stats(self, start: datetime, end: datetime) -> dict[str, Any]:
        where = [E.c.at >= start, E.c.at < end]
        critical = sa.func.coalesce(sa.func.sum(sa.case((E.c.critical.is_(True), 1), else_=0)), 0)

        async def grouped(conn: Any, column: Any) -> list[tuple[Any, int, int]]:
            q = sa.select(column, sa.func.count(), critical).where(*where).group_by(column) \
                .order_by(sa.func.count().desc(), column)
            return [(r[0], int(r[1]), int(r[2])) for r in await conn.execute(q)]

        async with reading(self._engine) as conn:
            by_class = {k: n for k, n, _ in await grouped(conn, E.c.error_class)}
            by_status = await grouped(conn, E.c.status)
            by_provider = await grouped(conn, E.c.provider)
            by_model = await grouped(conn, E.c.model)
            by_code = await grouped(conn, E.c.code)
            patterns = (await conn.execute(sa.select(sa.func.count(sa.distinct(E.c.fingerprint)))
                                           .where(*where))).scalar_one()
        total = sum(by_class.values())
        return {
            "total": total, "critical": sum(by_class.get(k, 0) for k in CLASSES if k != "client"),
            "by_class": {k: by_class.get(k, 0) for k in CLASSES},
            "by_status": {str(k): n for k, n, _ in by_status},
            "by_provider": [{"provider": k, "errors": n, "critical": c} for k, n, c in by_provider],
            "by_model": [{"model": k, "errors": n, "critical": c} for k, n, c in by_model],
            "by_code": [{"code": k, "errors": n, "critical": c} for k, n, c in by_code],
            "patterns": int(patterns),
        }

    async def during(self, start: datetime, end: datetime, models: Sequence[str] | None,
                     samples: int) -> dict[str, Any]:
        """For an incident's analysis: errors of these models in [start, end): the latest samples, counts by
        class and code, and the patterns they belong to."""
        where = [E.c.at >= start, E.c.at < end]
        if models is not None:
            where.append(E.c.model.in_(list(models)))
        async with reading(self._engine) as conn:
            rows = await conn.execute(sa.select(*E.c, PATTERN_ID)
                                      .select_from(E.outerjoin(P, P.c.fingerprint == E.c.fingerprint))
                                      .where(*where).order_by(E.c.at.desc(), E.c.id.desc()).limit(samples))
            sample = [event_json(r) for r in rows]
            types = await conn.execute(sa.select(E.c.error_class, E.c.code, E.c.status, sa.func.count())
                                       .where(*where).group_by(E.c.error_class, E.c.code, E.c.status)
                                       .order_by(sa.func.count().desc()))
            distribution = [{"class": r[0], "code": r[1], "status": r[2], "count": int(r[3])} for r in types]
            pats = await conn.execute(sa.select(PATTERN_ID, P.c.code, P.c.provider, P.c.model, P.c.message,
                                                P.c.status, sa.func.count().label("n"))
                                      .select_from(E.join(P, P.c.fingerprint == E.c.fingerprint)).where(*where)
                                      .group_by(P.c.id, P.c.code, P.c.provider, P.c.model, P.c.message, P.c.status)
                                      .order_by(sa.func.count().desc(), P.c.id))
            patterns = [{"pattern_id": r[0], "code": r[1], "provider": r[2], "model": r[3], "message": r[4],
                         "status": r[5], "count": int(r[6])} for r in pats]
        return {"errors": sum(d["count"] for d in distribution), "samples": sample,
                "type_distribution": distribution, "patterns": patterns}
