"""Usage analytics queries and the retention purge on SQLite and PostgreSQL, with records at chosen times."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.analytics.retention import UsageRetention
from gatewayz.analytics.store import UsageStore
from gatewayz.analytics.window import Window
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import usage_records

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


def _record(n: int, at: datetime, user_id: int = 1, **kw: Any) -> dict[str, Any]:
    row = {"request_id": f"r{n}", "user_id": user_id, "api_key_id": 7, "endpoint": "chat", "model": "m/a",
           "provider": "p1", "upstream_model": None, "stream": False, "status": 200, "error_code": None,
           "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0, "reasoning_tokens": 0,
           "cost_nanos": 1000, "latency_ms": float(n), "ttft_ms": None, "attempts": 1, "created_at": at}
    return row | kw


async def _insert(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(usage_records.insert(), rows)


async def _remaining(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(usage_records.c.request_id).order_by(usage_records.c.id))
        return [r[0] for r in rows]


async def test_purge_deletes_only_records_past_the_cutoff_in_batches(engine: AsyncEngine) -> None:
    cutoff = NOW - timedelta(days=30)
    old = [_record(i, cutoff - timedelta(days=1, minutes=i)) for i in range(7)]
    young = [_record(100 + i, cutoff + timedelta(seconds=i)) for i in range(3)]  # exactly at the cutoff stays
    await _insert(engine, old[:4] + young + old[4:])  # ids do not follow age
    store = UsageStore(engine)
    assert await store.purge(cutoff, batch=3) == 7  # three batches: 3, 3, 1
    assert await _remaining(engine) == ["r100", "r101", "r102"]
    assert await store.purge(cutoff, batch=3) == 0


async def test_retention_setting_drives_the_purge(engine: AsyncEngine) -> None:
    await _insert(engine, [_record(1, NOW - timedelta(days=401)), _record(2, NOW - timedelta(days=399)),
                           _record(3, NOW)])
    store = UsageStore(engine)
    keep_forever = UsageRetention(store, 0)
    keep_forever.start()  # no task at all
    assert await keep_forever.purge_once(NOW) == 0 and len(await _remaining(engine)) == 3
    assert await UsageRetention(store, 400).purge_once(NOW) == 1
    assert await _remaining(engine) == ["r2", "r3"]
    assert await UsageRetention(store, 1).purge_once(NOW) == 1
    assert await _remaining(engine) == ["r3"]


async def test_breakdown_groups_by_utc_day_within_the_window(engine: AsyncEngine) -> None:
    day = datetime(2025, 3, 9, tzinfo=UTC)
    await _insert(engine, [
        _record(1, day - timedelta(microseconds=1)),                              # before the window
        _record(2, day, model="m/b", provider="p2", cost_nanos=5),                # first instant of the window
        _record(3, day + timedelta(hours=23, minutes=59, seconds=59), status=502, cost_nanos=0,
                prompt_tokens=0, completion_tokens=0, api_key_id=8),
        _record(4, day + timedelta(days=1)),                                      # next UTC day
        _record(5, day + timedelta(days=2)),                                      # the (exclusive) end
        _record(6, day + timedelta(hours=1), user_id=2),                          # someone else's
    ])
    store = UsageStore(engine)
    data = await store.breakdown(1, Window(day, day + timedelta(days=2)))
    assert data["totals"] == {"requests": 3, "errors": 1, "prompt_tokens": 20, "completion_tokens": 10,
                              "total_tokens": 30, "cost_nanos": 1005}
    assert [(d["date"], d["requests"], d["errors"], d["cost_nanos"]) for d in data["by_day"]] == [
        ("2025-03-09", 2, 1, 5), ("2025-03-10", 1, 0, 1000)]
    assert [(m["model"], m["requests"], m["cost_nanos"]) for m in data["by_model"]] == [("m/a", 2, 1000),
                                                                                        ("m/b", 1, 5)]
    assert [(k["api_key_id"], k["requests"]) for k in data["by_api_key"]] == [(7, 2), (8, 1)]
    one_key = await store.breakdown(1, Window(day, day + timedelta(days=2)), key_id=8, by_key=False)
    assert one_key["totals"]["requests"] == 1 and "by_api_key" not in one_key


async def test_latency_percentiles_use_the_nearest_rank(engine: AsyncEngine) -> None:
    # 20 successes with latency 1..20 (ttft on the even ones), and a slow failure that must not count.
    rows = [_record(i, NOW, ttft_ms=float(i) / 2 if i % 2 == 0 else None) for i in range(1, 21)]
    await _insert(engine, [*rows, _record(99, NOW, status=502, latency_ms=9999.0)])
    store = UsageStore(engine)
    w = Window(NOW - timedelta(days=1), NOW + timedelta(days=1))
    got = await store.latency(1, w, None)
    assert got["latency_ms"] == {"samples": 20, "p50": 10.0, "p95": 19.0, "p99": 20.0}
    assert got["ttft_ms"] == {"samples": 10, "p50": 5.0, "p95": 10.0, "p99": 10.0}
    none = await store.latency(1, w, "no/such-model")
    assert none["latency_ms"] == {"samples": 0, "p50": None, "p95": None, "p99": None}


async def test_export_batches_cover_every_record_once(engine: AsyncEngine) -> None:
    await _insert(engine, [_record(i, NOW + timedelta(seconds=i)) for i in range(7)])
    store = UsageStore(engine)
    sizes, ids = [], []
    async for batch in store.export(1, Window(NOW, NOW + timedelta(days=1)), batch=3):
        sizes.append(len(batch))
        ids += [r["request_id"] for r in batch]
    assert sizes == [3, 3, 1] and ids == [f"r{i}" for i in range(7)]
