"""Time series for Grafana's SimpleJSON datasource, bucketed by the panel's interval, from `usage_records`.

Counting series (requests, errors, tokens, cost, requests per second, the per-provider / per-model
ones) have a point in every bucket of the range: a bucket without requests truly had zero. Rates and
percentiles exist only where there were requests, so an empty bucket has no point (never an invented 0).
At most MAX_POINTS buckets per series: a finer `intervalMs` is widened to fit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.billing.money import nanos_to_json
from gatewayz.monitoring.sql import IS_OK, U, Window, bucket_ms, counters, counts_of, percentiles, rate, reading

MAX_POINTS = 10_000
Counts = dict[str, int]

# name -> value of one bucket's counters (None: no point for that bucket)
COUNTED: dict[str, Callable[[Counts, float], float | int | None]] = {
    "requests": lambda c, _: c["requests"],
    "errors": lambda c, _: c["errors"],
    "error_rate": lambda c, _: rate(c["errors"], c["requests"]),
    "requests_per_second": lambda c, seconds: round(c["requests"] / seconds, 6),
    "tokens_in": lambda c, _: c["tokens_in"],
    "tokens_out": lambda c, _: c["tokens_out"],
    "cost_usd": lambda c, _: nanos_to_json(c["cost_nanos"]),
}
SPARSE = {"error_rate"}  # no point for a bucket without requests
# name -> (column of usage_records, percentile); successful requests only, ttft for streams
PERCENTILE: dict[str, tuple[str, int]] = {
    "latency_p50_ms": ("latency_ms", 50), "latency_p95_ms": ("latency_ms", 95),
    "latency_p99_ms": ("latency_ms", 99), "ttft_p50_ms": ("ttft_ms", 50), "ttft_p95_ms": ("ttft_ms", 95),
}
# name -> (grouping column, counted series): one series per provider or model, named `name{key="value"}`
GROUPED: dict[str, tuple[str, str]] = {
    "requests_by_provider": ("provider", "requests"), "errors_by_provider": ("provider", "errors"),
    "requests_by_model": ("model", "requests"), "cost_usd_by_model": ("model", "cost_usd"),
}
TARGETS = (*COUNTED, *PERCENTILE, *GROUPED)
ZERO: Counts = {"requests": 0, "errors": 0, "tokens_in": 0, "tokens_out": 0, "cost_nanos": 0}


@dataclass(frozen=True)
class Buckets:
    start: datetime
    end: datetime
    interval_ms: int

    @classmethod
    def fit(cls, start: datetime, end: datetime, interval_ms: int) -> Buckets:
        span_ms = max(1, int((end - start).total_seconds() * 1000))
        return cls(start, end, max(interval_ms, -(-span_ms // MAX_POINTS)))

    def starts(self) -> list[int]:
        first_ms = int(self.start.timestamp() * 1000) // self.interval_ms * self.interval_ms
        end_ms = int(self.end.timestamp() * 1000)
        return list(range(first_ms, end_ms, self.interval_ms)) if self.end > self.start else []


Series = tuple[str, str | None, list[tuple[float | int, int]]]  # (name, group value, [(value, epoch ms)])


class SeriesQuery:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def series(self, b: Buckets, targets: Sequence[str]) -> dict[str, list[Series]]:
        """Each target's series (one for a plain target, one per group for a grouped one)."""
        window = Window(b.start, b.end)
        bucket = bucket_ms(self.dialect, b.interval_ms)
        ticks = b.starts()
        seconds = b.interval_ms / 1000
        out: dict[str, list[Series]] = {}
        async with reading(self.engine) as conn:
            if any(t in COUNTED for t in targets):
                rows = (await conn.execute(sa.select(bucket.label("tick"), *counters()).where(window.where())
                                           .group_by(bucket))).all()
                per_tick = {int(r.tick): counts_of(r) for r in rows}
                for t in {t for t in targets if t in COUNTED}:
                    out[t] = [(t, None, _points(ticks, per_tick, COUNTED[t], seconds, t in SPARSE))]
            for t in {t for t in targets if t in PERCENTILE}:
                name, p = PERCENTILE[t]
                where = [window.where(), IS_OK] + ([U.c.stream.is_(True)] if name == "ttft_ms" else [])
                found = await percentiles(conn, U.c[name], where, [bucket], ps=(p,))
                points = [(v[f"p{p}"], int(k[0])) for k, v in found.items()]
                out[t] = [(t, None, sorted(points, key=lambda point: point[1]))]
            for t in {t for t in targets if t in GROUPED}:
                key, counted = GROUPED[t]
                column = U.c[key]
                rows = (await conn.execute(sa.select(bucket.label("tick"), column.label("k"), *counters())
                                           .where(window.where()).group_by(bucket, column))).all()
                groups: dict[Any, dict[int, Counts]] = {}
                for r in rows:
                    groups.setdefault(r.k, {})[int(r.tick)] = counts_of(r)
                labels = {k: "none" if k is None else str(k) for k in groups}
                out[t] = [(f'{t}{{{key}="{labels[k]}"}}', labels[k],
                           _points(ticks, by_tick, COUNTED[counted], seconds, False))
                          for k, by_tick in sorted(groups.items(), key=lambda kv: labels[kv[0]])]
        return out


def _points(ticks: list[int], per_tick: dict[int, Counts], value: Callable[[Counts, float], float | int | None],
            seconds: float, sparse: bool) -> list[tuple[float | int, int]]:
    points = []
    for tick in ticks:
        counts = per_tick.get(tick)
        if counts is None and sparse:
            continue
        v = value(counts or ZERO, seconds)
        if v is not None:
            points.append((v, tick))
    return points
