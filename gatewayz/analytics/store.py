"""Read-side queries over usage_records for one user (totals and breakdowns, the activity log, export batches,
latency percentiles), and the retention purge. Every query but the purge is scoped by user_id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.analytics.window import Window
from gatewayz.storage.schema import api_keys, usage_records

u = usage_records
OK = 200  # what the pipeline records for a served request (an interrupted stream is a 502)

LOG_COLUMNS = (u.c.id, u.c.request_id, u.c.created_at, u.c.model, u.c.provider, u.c.endpoint, u.c.stream, u.c.status,
               u.c.error_code, u.c.prompt_tokens, u.c.completion_tokens, u.c.cost_nanos, u.c.latency_ms, u.c.ttft_ms,
               u.c.api_key_id, u.c.images, u.c.audio_ms, u.c.characters)
PERCENTILES = (50, 95, 99)


def _measures() -> tuple[sa.ColumnElement[Any], ...]:
    return (sa.func.count().label("requests"),
            sa.func.coalesce(sa.func.sum(sa.case((u.c.status != OK, 1), else_=0)), 0).label("errors"),
            sa.func.coalesce(sa.func.sum(u.c.prompt_tokens), 0).label("prompt_tokens"),
            sa.func.coalesce(sa.func.sum(u.c.completion_tokens), 0).label("completion_tokens"),
            sa.func.coalesce(sa.func.sum(u.c.cost_nanos), 0).label("cost_nanos"))


def _bucket(m: Mapping[Any, Any]) -> dict[str, int]:
    # PostgreSQL sums BIGINT to NUMERIC (a Decimal here): back to exact ints.
    prompt, completion = int(m["prompt_tokens"]), int(m["completion_tokens"])
    return {"requests": int(m["requests"]), "errors": int(m["errors"]), "prompt_tokens": prompt,
            "completion_tokens": completion, "total_tokens": prompt + completion, "cost_nanos": int(m["cost_nanos"])}


def _day(dialect: str) -> sa.ColumnElement[str]:
    """The UTC calendar day of created_at as YYYY-MM-DD. Literal format strings, not bound parameters:
    PostgreSQL only matches the GROUP BY expression to the selected one when both are the same text."""
    if dialect == "postgresql":
        expr = sa.func.to_char(sa.func.timezone(sa.literal_column("'UTC'"), u.c.created_at),
                               sa.literal_column("'YYYY-MM-DD'"))
    else:  # SQLite stores the UTC time without an offset
        expr = sa.func.strftime(sa.literal_column("'%Y-%m-%d'"), u.c.created_at)
    return sa.type_coerce(expr, sa.String()).label("day")


def _status_filter(status: str | int | None) -> list[sa.ColumnElement[bool]]:
    if status is None:
        return []
    if status == "success":
        return [u.c.status == OK]
    if status == "error":
        return [u.c.status != OK]
    return [u.c.status == int(status)]


class UsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    @staticmethod
    def _scope(user_id: int, window: Window, key_id: int | None) -> list[sa.ColumnElement[bool]]:
        where = [u.c.user_id == user_id, u.c.created_at >= window.start, u.c.created_at < window.end]
        return where + ([u.c.api_key_id == key_id] if key_id is not None else [])

    async def breakdown(self, user_id: int, window: Window, key_id: int | None = None,
                        by_key: bool = True) -> dict[str, Any]:
        """Totals, and the same measures by day, by model, by provider and (unless one key is asked) by API key."""
        where = self._scope(user_id, window, key_id)
        day = _day(self._dialect)
        async with self._engine.connect() as conn:
            totals = (await conn.execute(sa.select(*_measures()).where(*where))).one()._mapping
            out: dict[str, Any] = {"totals": _bucket(totals)}
            rows = await conn.execute(sa.select(day, *_measures()).where(*where).group_by(day).order_by(day))
            out["by_day"] = [{"date": r.day, **_bucket(r._mapping)} for r in rows]
            for name, col in (("model", u.c.model), ("provider", u.c.provider)):
                rows = await conn.execute(sa.select(col, *_measures()).where(*where).group_by(col)
                                          .order_by(sa.desc("cost_nanos"), col))
                out[f"by_{name}"] = [{name: r[0], **_bucket(r._mapping)} for r in rows]
            if by_key:
                out["by_api_key"] = await self._by_key(conn, where)
        return out

    @staticmethod
    async def _by_key(conn: AsyncConnection, where: list[sa.ColumnElement[bool]]) -> list[dict[str, Any]]:
        joined = u.outerjoin(api_keys, api_keys.c.id == u.c.api_key_id)
        q = (sa.select(u.c.api_key_id, api_keys.c.name, api_keys.c.last4, *_measures()).select_from(joined)
             .where(*where).group_by(u.c.api_key_id, api_keys.c.name, api_keys.c.last4)
             .order_by(sa.desc("cost_nanos"), u.c.api_key_id))
        return [{"api_key_id": r.api_key_id, "name": r.name, "last4": r.last4, **_bucket(r._mapping)}
                for r in await conn.execute(q)]

    async def key(self, user_id: int, key_id: int) -> dict[str, Any] | None:
        """One of the user's keys, active or not (a revoked or rotated key keeps its history)."""
        q = (sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.last4, api_keys.c.is_active)
             .where(api_keys.c.id == key_id, api_keys.c.user_id == user_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return dict(row._mapping) if row else None

    async def log(self, user_id: int, limit: int, offset: int, model: str | None = None, provider: str | None = None,
                  status: str | int | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of the user's requests, newest first, and how many match in all."""
        where = [u.c.user_id == user_id, *_status_filter(status)]
        where += [u.c.model == model] if model is not None else []
        where += [u.c.provider == provider] if provider is not None else []
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(u).where(*where))).scalar_one()
            rows = await conn.execute(sa.select(*LOG_COLUMNS).where(*where)
                                      .order_by(u.c.created_at.desc(), u.c.id.desc()).limit(limit).offset(offset))
            return [dict(r._mapping) for r in rows], int(total)

    async def export(self, user_id: int, window: Window, batch: int = 1000) -> AsyncIterator[list[dict[str, Any]]]:
        """Every record in the window, oldest first, in batches read by keyset (id) on short connections, so
        memory stays bounded and no transaction stays open while the client reads."""
        after = 0
        where = self._scope(user_id, window, None)
        while True:
            async with self._engine.connect() as conn:
                rows = [dict(r._mapping) for r in await conn.execute(
                    sa.select(*LOG_COLUMNS).where(*where, u.c.id > after).order_by(u.c.id).limit(batch))]
            if rows:
                yield rows
            if len(rows) < batch:
                return
            after = rows[-1]["id"]

    async def latency(self, user_id: int, window: Window, model: str | None) -> dict[str, Any]:
        """Nearest-rank percentiles of latency and time to first token over the user's successful requests
        (the same method on every database); null when there is no sample."""
        where = [*self._scope(user_id, window, None), u.c.status == OK]
        where += [u.c.model == model] if model is not None else []
        async with self._engine.connect() as conn:
            return {"latency_ms": await _percentiles(conn, u.c.latency_ms, where),
                    "ttft_ms": await _percentiles(conn, u.c.ttft_ms, where)}

    async def purge(self, cutoff: datetime, batch: int = 1000) -> int:
        """Delete records created before `cutoff`, `batch` rows per transaction (short locks, bounded undo);
        returns how many went."""
        deleted = 0
        while True:
            oldest = sa.select(u.c.id).where(u.c.created_at < cutoff).order_by(u.c.created_at).limit(batch)
            async with self._engine.begin() as conn:
                n = (await conn.execute(u.delete().where(u.c.id.in_(oldest)))).rowcount
            deleted += n
            if n < batch:
                return deleted
            await asyncio.sleep(0)  # let requests in between batches


async def _percentiles(conn: AsyncConnection, col: sa.ColumnElement[Any],
                       where: list[sa.ColumnElement[bool]]) -> dict[str, Any]:
    where = [*where, col.is_not(None)]
    n = int((await conn.execute(sa.select(sa.func.count()).select_from(u).where(*where))).scalar_one())
    out: dict[str, Any] = {"samples": n}
    for p in PERCENTILES:
        value = None
        if n:
            rank = -(-p * n // 100)  # ceil(p/100 * n), the nearest-rank definition
            value = (await conn.execute(sa.select(col).where(*where).order_by(col).limit(1)
                                        .offset(rank - 1))).scalar_one()
        out[f"p{p}"] = value
    return out
