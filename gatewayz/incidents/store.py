"""Incidents in SQL (SQLite and PostgreSQL). Opening is a conditional insert against the partial unique index
(one open incident per target), so any number of workers may report the same outage: one row is created
and the others add to its event count. Every state change is a single conditional update."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.monitoring.sql import reading
from gatewayz.storage.schema import incident_events, incidents

INC, EV = incidents, incident_events
OPEN = INC.c.status == "open"


def incident_json(row: Any) -> dict[str, Any]:
    r = dict(row._mapping)
    provider, _, model = r["target"].partition("|")
    r["provider"], r["model"] = provider, model or None
    end = r["resolved_at"]
    r["duration_s"] = round((end - r["opened_at"]).total_seconds(), 3) if end is not None else None
    return r


class IncidentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = self.engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def _event(self, conn: AsyncConnection, incident_id: int, at: datetime, kind: str, detail: str) -> None:
        await conn.execute(EV.insert().values(incident_id=incident_id, at=at, kind=kind, detail=detail[:1000]))

    async def open(self, *, kind: str, target: str, severity: str, cause: str, notes: str, at: datetime,
                   event: tuple[str, str]) -> tuple[int, bool]:
        """The open incident of `target`, created if there is none: (id, created). Its event is recorded
        either way (and counted when the incident already existed)."""
        insert = self._insert(INC).values(kind=kind, target=target, severity=severity, status="open", opened_at=at,
                                        cause=cause, notes=notes[:2000], events=1) \
            .on_conflict_do_nothing(index_elements=[INC.c.target], index_where=OPEN).returning(INC.c.id)
        touch = INC.update().where(INC.c.target == target, OPEN).values(events=INC.c.events + 1).returning(INC.c.id)
        async with self._engine.begin() as conn:
            for _ in range(3):  # the open one may be resolved between the two statements: then insert again
                new_id = (await conn.execute(insert)).scalar_one_or_none()
                if new_id is not None:
                    await self._event(conn, new_id, at, *event)
                    return int(new_id), True
                old_id = (await conn.execute(touch)).scalar_one_or_none()
                if old_id is not None:
                    await self._event(conn, old_id, at, *event)
                    return int(old_id), False
        raise RuntimeError(f"could not open or find the incident of {target}")

    async def add_event(self, target: str, at: datetime, kind: str, detail: str) -> int | None:
        """An event on the open incident of `target` (none open: nothing recorded)."""
        async with self._engine.begin() as conn:
            found = (await conn.execute(INC.update().where(INC.c.target == target, OPEN)
                                        .values(events=INC.c.events + 1).returning(INC.c.id))).scalar_one_or_none()
            if found is not None:
                await self._event(conn, found, at, kind, detail)
            return None if found is None else int(found)

    async def auto_resolve(self, target: str, at: datetime, detail: str, notes: str,
                           causes: Sequence[str] | None = None) -> int | None:
        """Resolve the open incident of `target` (opened before `at`, of one of `causes` if given) as recovered."""
        where = [INC.c.target == target, OPEN, INC.c.opened_at <= at]
        if causes is not None:
            where.append(INC.c.cause.in_(list(causes)))
        async with self._engine.begin() as conn:
            found = (await conn.execute(INC.update().where(*where).values(
                status="resolved", resolved_at=at, resolved_by="auto", notes=notes[:2000],
                events=INC.c.events + 1).returning(INC.c.id))).scalar_one_or_none()
            if found is not None:
                await self._event(conn, found, at, "resolved", detail)
            return None if found is None else int(found)

    async def resolve(self, incident_id: int, note: str, actor: str, at: datetime) -> str | None:
        """An admin's resolution: an open incident is resolved with the note ("resolved"); an incident resolved
        automatically takes one note ("noted"). None: nothing changed (resolved with a note already, or absent)."""
        async with self._engine.begin() as conn:
            res = await conn.execute(INC.update().where(INC.c.id == incident_id, OPEN).values(
                status="resolved", resolved_at=at, resolved_by=actor, resolution_note=note, resolution_note_by=actor))
            if res.rowcount:
                await self._event(conn, incident_id, at, "resolved", f"resolved by {actor}: {note}")
                return "resolved"
            res = await conn.execute(INC.update().where(INC.c.id == incident_id, INC.c.status == "resolved",
                                                      INC.c.resolution_note.is_(None))
                                     .values(resolution_note=note, resolution_note_by=actor))
            if res.rowcount:
                await self._event(conn, incident_id, at, "note", f"note by {actor}: {note}")
                return "noted"
        return None

    # ---- reading ------------------------------------------------------------------------------------------

    async def open_targets(self) -> dict[str, str]:
        """target -> cause of every open incident."""
        async with self._engine.connect() as conn:
            return {r[0]: r[1] for r in await conn.execute(sa.select(INC.c.target, INC.c.cause).where(OPEN))}

    async def page(self, limit: int, offset: int, status: str | None = None, target: str | None = None,
                   kind: str | None = None) -> tuple[list[dict[str, Any]], int]:
        where = []
        for column, value in ((INC.c.status, status), (INC.c.target, target), (INC.c.kind, kind)):
            if value is not None:
                where.append(column == value)
        async with reading(self._engine) as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(INC).where(*where))).scalar_one()
            rows = await conn.execute(sa.select(INC).where(*where).order_by(INC.c.opened_at.desc(), INC.c.id.desc())
                                      .limit(limit).offset(offset))
            return [incident_json(r) for r in rows], int(total)

    async def get(self, incident_id: int) -> dict[str, Any] | None:
        async with reading(self._engine) as conn:
            row = (await conn.execute(sa.select(INC).where(INC.c.id == incident_id))).first()
            return None if row is None else incident_json(row)

    async def events(self, incident_id: int) -> list[dict[str, Any]]:
        async with reading(self._engine) as conn:
            rows = await conn.execute(sa.select(EV.c.at, EV.c.kind, EV.c.detail).where(EV.c.incident_id == incident_id)
                                      .order_by(EV.c.at, EV.c.id))
            return [dict(r._mapping) for r in rows]

    async def overlapping(self, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], int]:
        """Incidents open at some time in [start, end), and how many are open now."""
        where = [INC.c.opened_at < end, sa.or_(INC.c.resolved_at.is_(None), INC.c.resolved_at >= start)]
        async with reading(self._engine) as conn:
            rows = await conn.execute(sa.select(INC).where(*where).order_by(INC.c.opened_at))
            open_now = (await conn.execute(sa.select(sa.func.count()).select_from(INC).where(OPEN))).scalar_one()
            return [incident_json(r) for r in rows], int(open_now)
