"""The operator views over `usage_records`: realtime stats, error rates, costs, recent requests, latency.

Latency percentiles cover successful requests only (status below 400): a client's 400 answered in a few
milliseconds, or a request that waited out the deadline, is not the latency of a served request; those are
counted as errors instead. Time to first token comes from streamed requests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.billing.money import nanos_to_json
from gatewayz.monitoring.sql import (
    IS_ERROR,
    IS_OK,
    U,
    Window,
    bucket_ms,
    counters,
    counts_of,
    no_percentiles,
    percentiles,
    rate,
    reading,
)

DAY_MS = 86_400_000


@dataclass(frozen=True)
class RequestFilter:
    model: str | None = None
    provider: str | None = None
    status: str | None = None  # "ok", "error" or an HTTP status code
    user_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        if self.model is not None:
            out.append(U.c.model == self.model)
        if self.provider is not None:
            out.append(U.c.provider == self.provider)
        if self.status == "ok":
            out.append(IS_OK)
        elif self.status == "error":
            out.append(IS_ERROR)
        elif self.status is not None:
            out.append(U.c.status == int(self.status))
        if self.user_id is not None:
            out.append(U.c.user_id == self.user_id)
        if self.start is not None:
            out.append(U.c.created_at >= self.start)
        if self.end is not None:
            out.append(U.c.created_at < self.end)
        return out


def summary(c: dict[str, int]) -> dict[str, Any]:
    """Counters as JSON: error rate, cost in USD beside the exact nanodollars."""
    return {"requests": c["requests"], "errors": c["errors"], "error_rate": rate(c["errors"], c["requests"]),
            "tokens_in": c["tokens_in"], "tokens_out": c["tokens_out"],
            "cost_usd": nanos_to_json(c["cost_nanos"]), "cost_nanos": c["cost_nanos"]}


def _total(groups: list[dict[str, int]]) -> dict[str, int]:
    keys = ("requests", "errors", "tokens_in", "tokens_out", "cost_nanos")
    return {k: sum(g[k] for g in groups) for k in keys}


class MonitoringQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def realtime(self, window: Window) -> dict[str, Any]:
        async with reading(self.engine) as conn:
            rows = (await conn.execute(sa.select(U.c.provider, *counters()).where(window.where())
                                       .group_by(U.c.provider))).all()
            where = [window.where(), IS_OK]
            overall = await percentiles(conn, U.c.latency_ms, where)
            per_provider = await percentiles(conn, U.c.latency_ms, where, [U.c.provider])
        groups = {r.provider: counts_of(r) for r in rows}
        total = _total(list(groups.values()))
        by_provider = [{"provider": p, **summary(c), "latency_ms": per_provider.get((p,), no_percentiles())}
                       for p, c in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]
        return {"window": window.json(), **summary(total),
                "requests_per_second": round(total["requests"] / window.seconds, 6),
                "latency_ms": overall.get((), no_percentiles()), "by_provider": by_provider}

    async def error_rates(self, window: Window) -> dict[str, Any]:
        async with reading(self.engine) as conn:
            out: dict[str, Any] = {"window": window.json()}
            for name, column in (("by_provider", U.c.provider), ("by_model", U.c.model)):
                rows = (await conn.execute(
                    sa.select(column.label("key"), U.c.status, sa.func.count().label("n")).where(window.where())
                    .group_by(column, U.c.status))).all()
                out[name] = _error_groups(name.removeprefix("by_"), rows)
        requests = sum(g["requests"] for g in out["by_model"])
        errors = sum(g["errors"] for g in out["by_model"])
        out.update(requests=requests, errors=errors, error_rate=rate(errors, requests))
        return out

    async def cost_analysis(self, window: Window, top_users: int) -> dict[str, Any]:
        day = bucket_ms(self.dialect, DAY_MS).label("day")
        async with reading(self.engine) as conn:
            async def grouped(*cols: Any, order: Any = None, limit: int | None = None) -> list[Any]:
                q = sa.select(*cols, *counters()).where(window.where()).group_by(*cols)
                if order is not None:
                    q = q.order_by(order)
                return list((await conn.execute(q.limit(limit))).all())

            models = await grouped(U.c.model)
            providers = await grouped(U.c.provider)
            users = await grouped(U.c.user_id, order=sa.desc("cost_nanos"), limit=top_users)
            user_count = (await conn.execute(sa.select(sa.func.count(sa.distinct(U.c.user_id)))
                                             .where(window.where()))).scalar_one()
            days = await grouped(day)

        def by_cost(rows: list[Any], key: str) -> list[dict[str, Any]]:
            items = [{key: getattr(r, key), **summary(counts_of(r))} for r in rows]
            return sorted(items, key=lambda x: (-x["cost_nanos"], str(x[key])))

        total = _total([counts_of(r) for r in models])
        return {"window": window.json(), **summary(total),
                "by_model": by_cost(models, "model"), "by_provider": by_cost(providers, "provider"),
                "by_user": [{"user_id": r.user_id, **summary(counts_of(r))} for r in users],
                "users": int(user_count),
                "by_day": sorted(({"day": datetime.fromtimestamp(int(r.day) / 1000, UTC).date().isoformat(),
                                   **summary(counts_of(r))} for r in days), key=lambda d: d["day"])}

    async def request_counts(self, window: Window) -> dict[str, Any]:
        async with reading(self.engine) as conn:
            rows = (await conn.execute(sa.select(U.c.endpoint, U.c.stream, U.c.status, sa.func.count().label("n"))
                                       .where(window.where()).group_by(U.c.endpoint, U.c.stream, U.c.status))).all()
        by_status: dict[str, int] = defaultdict(int)
        by_endpoint: dict[str, int] = defaultdict(int)
        total = errors = streamed = 0
        for r in rows:
            n = int(r.n)
            total += n
            errors += n if r.status >= 400 else 0
            streamed += n if r.stream else 0
            by_status[str(r.status)] += n
            by_endpoint[r.endpoint] += n
        return {"window": window.json(), "total": total, "ok": total - errors, "errors": errors,
                "error_rate": rate(errors, total), "streamed": streamed,
                "by_status": dict(sorted(by_status.items())), "by_endpoint": dict(sorted(by_endpoint.items()))}

    async def models(self, window: Window) -> dict[str, Any]:
        async with reading(self.engine) as conn:
            rows = (await conn.execute(sa.select(U.c.model, *counters(), sa.func.max(U.c.created_at).label("last"))
                                       .where(window.where()).group_by(U.c.model))).all()
            pairs = (await conn.execute(sa.select(U.c.model, U.c.provider).distinct()
                                        .where(window.where(), U.c.provider.is_not(None)))).all()
        providers: dict[str, list[str]] = defaultdict(list)
        for p in pairs:
            providers[p.model].append(p.provider)
        data = [{"model": r.model, **summary(counts_of(r)), "providers": sorted(providers[r.model]),
                 "last_request_at": r.last} for r in rows]
        data.sort(key=lambda m: (-m["requests"], m["model"]))
        return {"window": window.json(), "data": data, "total": len(data)}

    async def requests(self, f: RequestFilter, limit: int, offset: int) -> dict[str, Any]:
        where = f.where()
        cols = [U.c.id, U.c.request_id, U.c.user_id, U.c.api_key_id, U.c.endpoint, U.c.model, U.c.provider,
                U.c.upstream_model, U.c.stream, U.c.status, U.c.error_code, U.c.prompt_tokens,
                U.c.completion_tokens, U.c.cost_nanos, U.c.latency_ms, U.c.ttft_ms, U.c.attempts, U.c.created_at]
        async with reading(self.engine) as conn:
            total = (await conn.execute(sa.select(sa.func.count()).select_from(U).where(*where))).scalar_one()
            rows = (await conn.execute(sa.select(*cols).where(*where).order_by(U.c.created_at.desc(), U.c.id.desc())
                                       .limit(limit).offset(offset))).mappings().all()
        data = [{**dict(r), "cost_usd": nanos_to_json(r["cost_nanos"])} for r in rows]
        return {"data": data, "total": int(total), "limit": limit, "offset": offset}

    async def latency(self, provider: str, model: str, window: Window) -> dict[str, Any]:
        pair = [window.where(), U.c.provider == provider, U.c.model == model]
        async with reading(self.engine) as conn:
            c = counts_of((await conn.execute(sa.select(*counters()).where(*pair))).one())
            mean = (await conn.execute(sa.select(sa.func.avg(U.c.latency_ms)).where(*pair, IS_OK))).scalar_one()
            lat = await percentiles(conn, U.c.latency_ms, [*pair, IS_OK])
            ttft = await percentiles(conn, U.c.ttft_ms, [*pair, IS_OK, U.c.stream.is_(True)])
        return {"provider": provider, "model": model, "window": window.json(), "requests": c["requests"],
                "errors": c["errors"], "error_rate": rate(c["errors"], c["requests"]),
                "latency_ms": {**lat.get((), no_percentiles()),
                               "mean": None if mean is None else round(float(mean), 3)},
                "ttft_ms": ttft.get((), no_percentiles())}


def _error_groups(key: str, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of (key, status, n) as one entry per key: requests, errors, error rate, errors by status."""
    groups: dict[Any, dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(r.key, {key: r.key, "requests": 0, "errors": 0, "error_statuses": {}})
        n = int(r.n)
        g["requests"] += n
        if r.status >= 400:
            g["errors"] += n
            g["error_statuses"][str(r.status)] = g["error_statuses"].get(str(r.status), 0) + n
    out = [{**g, "error_rate": rate(g["errors"], g["requests"])} for g in groups.values()]
    return sorted(out, key=lambda g: (-(g["error_rate"] or 0), -g["requests"], str(g[key])))
