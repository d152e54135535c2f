"""SQL building blocks of the monitoring views, portable across SQLite and PostgreSQL.

- Every view reads `usage_records` (one row per inference request, written by every worker), never a
  process's memory, so the numbers are the same whichever worker answers.
- A request is an error when its status is 400 or more (upstream failures, a stream cut midway: 502).
- Percentiles are exact nearest-rank values computed in SQL with window functions (ROW_NUMBER and
  COUNT over a partition; SQLite 3.25+ and PostgreSQL): the value of rank ceil(p × n / 100) in ascending
  order. No row is loaded into Python and nothing is sampled; an empty group has no percentile (null).
- If the database cannot be read, a view fails with 503 (ServiceUnavailable): never zeros in its place.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gatewayz.errors import ServiceUnavailable
from gatewayz.storage.schema import usage_records

log = logging.getLogger("gatewayz.monitoring")

U = usage_records
IS_ERROR = U.c.status >= 400
IS_OK = U.c.status < 400
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end) of usage rows."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: timedelta, end: datetime | None = None) -> Window:
        end = end or datetime.now(UTC)
        return cls(end - span, end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def where(self) -> sa.ColumnElement[bool]:
        return sa.and_(U.c.created_at >= self.start, U.c.created_at < self.end)

    def json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "seconds": round(self.seconds, 3)}


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@contextlib.asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for one view; any database failure becomes a 503 in the OpenAI error shape."""
    try:
        async with engine.connect() as conn:
            yield conn
    except (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError, TimeoutError) as exc:
        log.warning("monitoring view could not read the database: %s: %s", type(exc).__name__, exc)
        raise ServiceUnavailable(
            f"The monitoring data lives in the database, which cannot be read right now ({type(exc).__name__}); "
            "no figures are given rather than invented ones. Retry shortly.",
            code="database_unavailable", headers={"retry-after": "5"}) from None


def epoch_ms(dialect: str) -> sa.ColumnElement[int]:
    """`created_at` as whole milliseconds since the epoch (floored), for time buckets."""
    if dialect == "sqlite":
        # SQLAlchemy stores SQLite timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): whole seconds from the
        # first 19 characters, milliseconds from the first three fraction digits (julianday would round).
        seconds = sa.cast(sa.func.strftime("%s", sa.func.substr(U.c.created_at, 1, 19)), sa.BigInteger)
        millis = sa.cast(sa.func.substr(U.c.created_at, 21, 3), sa.BigInteger)
        return seconds * 1000 + millis
    return sa.cast(sa.func.floor(sa.extract("epoch", U.c.created_at) * 1000), sa.BigInteger)


def bucket_ms(dialect: str, interval_ms: int) -> sa.ColumnElement[int]:
    """The start (epoch ms) of the `interval_ms` bucket holding each row."""
    return (epoch_ms(dialect) // interval_ms) * interval_ms


def counters() -> list[sa.Label[Any]]:
    """Aggregates every view needs: requests, errors, tokens in and out, cost (nanodollars)."""
    return [sa.func.count().label("requests"),
            sa.func.coalesce(sa.func.sum(sa.case((IS_ERROR, 1), else_=0)), 0).label("errors"),
            sa.func.coalesce(sa.func.sum(U.c.prompt_tokens), 0).label("tokens_in"),
            sa.func.coalesce(sa.func.sum(U.c.completion_tokens), 0).label("tokens_out"),
            sa.func.coalesce(sa.func.sum(U.c.cost_nanos), 0).label("cost_nanos")]


def counts_of(row: Any) -> dict[str, int]:
    """The `counters()` of a result row as ints (PostgreSQL sums bigints as numeric)."""
    return {k: int(getattr(row, k)) for k in ("requests", "errors", "tokens_in", "tokens_out", "cost_nanos")}


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


async def percentiles(conn: AsyncConnection, value: sa.ColumnElement[Any], where: Sequence[sa.ColumnElement[bool]],
                      groups: Sequence[sa.ColumnElement[Any]] = (),
                      ps: Sequence[int] = PERCENTILES) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Exact nearest-rank percentiles of `value` (nulls left out) per group: {group key: {"count": n,
    "p50": ..., ...}}. Groups without rows are absent; with no `groups` the key is ()."""
    partition = list(groups) or None
    labelled = [g.label(f"g{i}") for i, g in enumerate(groups)]
    ranked = sa.select(*labelled, value.label("v"),
                       sa.func.row_number().over(partition_by=partition, order_by=value).label("rn"),
                       sa.func.count().over(partition_by=partition).label("n")) \
        .where(*where, value.is_not(None)).subquery()
    keys = [ranked.c[f"g{i}"] for i in range(len(groups))]
    picks = [sa.func.max(sa.case((ranked.c.rn == (ranked.c.n * p + 99) // 100, ranked.c.v))).label(f"p{p}")
             for p in ps]
    q = sa.select(*keys, sa.func.max(ranked.c.n).label("count"), *picks).group_by(*keys)
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in (await conn.execute(q)).mappings():
        if row["count"] is None:
            continue  # no groups and no rows: one all-null row
        key = tuple(row[f"g{i}"] for i in range(len(groups)))
        out[key] = {"count": int(row["count"]), **{f"p{p}": _ms(row[f"p{p}"]) for p in ps}}
    return out


def no_percentiles(ps: Sequence[int] = PERCENTILES) -> dict[str, Any]:
    return {"count": 0, **{f"p{p}": None for p in ps}}


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
