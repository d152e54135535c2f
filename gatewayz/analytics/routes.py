"""The caller's own usage: stats and breakdowns, the activity log, one key's usage, export, latency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from gatewayz.analytics.export import csv_stream, json_stream, record_json
from gatewayz.analytics.window import MAX_DAYS, Window, window
from gatewayz.api.deps import ContainerDep, User
from gatewayz.billing.money import nanos_to_json
from gatewayz.errors import NotFound

router = APIRouter(tags=["user"])

START = Query(None, max_length=64, description="ISO date or date-time (UTC when naive); default 30 days before end")
END = Query(None, max_length=64, description="ISO date (its whole day included) or date-time (exclusive)")
DAYS = Query(None, ge=1, le=MAX_DAYS, description="the last N days including today, instead of start/end")


def _spend(bucket: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in bucket.items() if k != "cost_nanos"}
    return out | {"spend": nanos_to_json(bucket["cost_nanos"]), "spend_nanos": bucket["cost_nanos"]}


def _render(w: Window, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"start": w.start.isoformat(), "end": w.end.isoformat(), "currency": "USD",
                           "totals": _spend(data["totals"])}
    for name, buckets in data.items():
        if name.startswith("by_"):
            out[name] = [_spend(b) for b in buckets]
    return out


@router.get("/user/activity/stats")
async def activity_stats(user: User, c: ContainerDep, start_date: str | None = START, end_date: str | None = END,
                         days: int | None = DAYS) -> dict[str, Any]:
    """Requests, tokens and spend in the range: totals, and by day (UTC), model, provider and API key."""
    assert user.user_id is not None
    w = window(start_date, end_date, days)
    await c.credits.drain()  # include settlements still being written
    return _render(w, await c.usage.breakdown(user.user_id, w))


@router.get("/user/activity/log")
async def activity_log(user: User, c: ContainerDep, limit: int = Query(50, ge=1, le=1000),
                       offset: int = Query(0, ge=0), model: str | None = Query(None, max_length=200),
                       provider: str | None = Query(None, max_length=64),
                       status: str | None = Query(None, pattern=r"^(success|error|[1-5][0-9][0-9])$",
                                                  description="success, error, or an HTTP status")
                       ) -> dict[str, Any]:
    """The caller's requests, newest first; `total` counts every matching record, not the page."""
    assert user.user_id is not None
    await c.credits.drain()
    rows, total = await c.usage.log(user.user_id, limit, offset, model, provider,
                                    int(status) if status and status.isdigit() else status)
    return {"data": [record_json(r) for r in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/user/api-keys/{key_id}/usage")
async def key_usage(key_id: int, user: User, c: ContainerDep, start_date: str | None = START,
                    end_date: str | None = END, days: int | None = DAYS) -> dict[str, Any]:
    """One of the caller's keys (revoked and rotated ones too): totals, by day, model and provider."""
    assert user.user_id is not None
    w = window(start_date, end_date, days)
    key = await c.usage.key(user.user_id, key_id)
    if key is None:
        raise NotFound(f"No API key {key_id} for this user.", param="key_id", code="api_key_not_found")
    await c.credits.drain()
    return {"key": key, **_render(w, await c.usage.breakdown(user.user_id, w, key_id=key_id, by_key=False))}


@router.get("/user/usage/export")
async def export(user: User, c: ContainerDep, fmt: Literal["csv", "json"] = Query("csv", alias="format"),
                 start_date: str | None = START, end_date: str | None = END,
                 days: int | None = DAYS) -> StreamingResponse:
    """Every record in the range, oldest first, streamed in batches: CSV with a header row, or a JSON array."""
    assert user.user_id is not None
    w = window(start_date, end_date, days)
    await c.credits.drain()
    batches = c.usage.export(user.user_id, w)
    last_day = w.end - timedelta(microseconds=1)
    filename = f"gatewayz-usage-{w.start:%Y-%m-%d}-to-{last_day:%Y-%m-%d}.{fmt}"
    headers = {"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"}
    if fmt == "csv":
        return StreamingResponse(csv_stream(batches), media_type="text/csv; charset=utf-8", headers=headers)
    return StreamingResponse(json_stream(batches), media_type="application/json", headers=headers)


@router.get("/user/latency")
async def latency(user: User, c: ContainerDep, model: str | None = Query(None, max_length=200),
                  start_date: str | None = START, end_date: str | None = END,
                  days: int | None = DAYS) -> dict[str, Any]:
    """p50 / p95 / p99 of total latency and of time to first token (streams) over successful requests."""
    assert user.user_id is not None
    w = window(start_date, end_date, days)
    await c.credits.drain()
    return {"model": model, "start": w.start.isoformat(), "end": w.end.isoformat(),
            **await c.usage.latency(user.user_id, w, model)}
