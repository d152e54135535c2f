"""The error monitor's and the incidents' stores on SQLite and PostgreSQL: batches upsert pattern counts (a
resolved pattern reopens on a later occurrence, not on a late-written earlier one), an incident opens once per
target however many writers race, resolves once, and an automatic resolution takes one admin note."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.error_monitor.events import ErrorEvent, make_event, normalize
from gatewayz.error_monitor.store import ErrorStore
from gatewayz.incidents.store import IncidentStore
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import incident_events

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


def _event(at: datetime, message: str, *, status: int = 502, provider: str | None = "p1",
           code: str = "upstream_error") -> ErrorEvent:
    return make_event(status=status, code=code, error_class="upstream" if status >= 500 else "client",
                      message=message, provider=provider, model="m/x", endpoint="chat.completions", at=at,
                      request_id=f"req-{at.timestamp()}")


def test_normalized_messages_share_a_fingerprint() -> None:
    a = _event(T0, "upstream req_0123456789abcdef0 timed out after 30.5 s (attempt 2)")
    b = _event(T0, "upstream req_fedcba98765432100 timed out after 12 s (attempt 3)")
    assert a.pattern == b.pattern == "upstream <id> timed out after <n> s (attempt <n>)"
    assert a.fingerprint == b.fingerprint
    assert _event(T0, a.message, provider="p2").fingerprint != a.fingerprint  # provider is part of it
    assert normalize("id 123e4567-e89b-12d3-a456-426614174000 digest 9f86d081884c7d65") == "id <id> digest <id>"


async def test_batches_upsert_pattern_counts_and_reopen(engine: AsyncEngine) -> None:
    store = ErrorStore(engine)
    boom = [_event(T0 + timedelta(seconds=i), f"provider p1 answered 503 for req {i}") for i in range(3)]
    other = _event(T0, "bad key", status=401, provider=None, code="invalid_api_key")
    await store.write([*boom, other])
    await store.write([_event(T0 + timedelta(seconds=10), "provider p1 answered 503 for req 99")])

    pats, total = await store.patterns(10, 0)
    assert total == 2
    top = pats[0]
    assert (top["count"], top["first_seen"], top["last_seen"]) == (4, T0, T0 + timedelta(seconds=10))
    assert top["message"] == "provider p1 answered <n> for req <n>"  # digits inside a name stay
    assert top["sample_message"] == "provider p1 answered 503 for req 99"
    assert (top["status"], top["class"], top["provider"], top["code"]) == ("open", "upstream", "p1", "upstream_error")
    assert [p["count"] for p in (await store.patterns(10, 0, min_count=2))[0]] == [4]
    assert (await store.patterns(10, 0, since=T0 + timedelta(seconds=5)))[1] == 1

    recent, n = await store.recent(2)
    assert n == 5 and [r["message"] for r in recent] == ["provider p1 answered 503 for req 99",
                                                         "provider p1 answered 503 for req 2"]
    assert recent[0]["pattern_id"] == top["id"]
    crit, n_crit = await store.recent(10, critical=True)
    assert n_crit == 4 and all(r["critical"] for r in crit)

    # resolve; an occurrence written late but from before the resolution does not reopen it, a new one does
    resolved_at = T0 + timedelta(minutes=1)
    assert await store.resolve_pattern(top["id"], "fixed upstream", "admin", resolved_at)
    assert not await store.resolve_pattern(top["id"], "again", "admin", resolved_at)
    await store.write([_event(T0 + timedelta(seconds=30), "provider p1 answered 503 for req 7")])
    after = await store.pattern(top["id"])
    assert after is not None and (after["status"], after["count"], after["reopened"]) == ("resolved", 5, 0)
    await store.write([_event(T0 + timedelta(minutes=2), "provider p1 answered 503 for req 8")])
    after = await store.pattern(top["id"])
    assert after is not None and (after["status"], after["count"], after["reopened"]) == ("open", 6, 1)
    assert after["resolution_note"] == "fixed upstream"   # the last resolution stays on record

    stats = await store.stats(T0, T0 + timedelta(hours=1))
    assert stats["total"] == 7 and stats["critical"] == 6
    assert stats["by_class"] == {"client": 1, "upstream": 6, "gateway": 0, "exception": 0}
    assert stats["by_status"] == {"502": 6, "401": 1}
    assert stats["by_provider"] == [{"provider": "p1", "errors": 6, "critical": 6},
                                    {"provider": None, "errors": 1, "critical": 0}]
    assert stats["patterns"] == 2
    assert await store.purge(T0 + timedelta(seconds=5)) == 4   # three of `boom` and `other`
    assert (await store.recent(10))[1] == 3


async def test_concurrent_writers_add_to_one_pattern(engine: AsyncEngine, db_url: str) -> None:
    engines = [create_engine(db_url) for _ in range(4)]
    try:
        batches = [[_event(T0 + timedelta(milliseconds=w * 10 + i), "same failure 1") for i in range(5)]
                   for w in range(4)]
        await asyncio.gather(*(ErrorStore(e).write(b) for e, b in zip(engines, batches, strict=True)))
    finally:
        for e in engines:
            await e.dispose()
    pats, total = await ErrorStore(engine).patterns(10, 0)
    assert total == 1 and pats[0]["count"] == 20


async def test_incident_opens_once_however_many_writers_race(engine: AsyncEngine, db_url: str) -> None:
    engines = [create_engine(db_url) for _ in range(6)]
    try:
        results = await asyncio.gather(*(IncidentStore(e).open(
            kind="provider", target="p1", severity="critical", cause="breaker_open", notes="down", at=T0,
            event=("breaker", f"writer {i}")) for i, e in enumerate(engines)))
    finally:
        for e in engines:
            await e.dispose()
    assert len({r[0] for r in results}) == 1 and sum(created for _, created in results) == 1
    store = IncidentStore(engine)
    rows, total = await store.page(10, 0)
    assert total == 1 and rows[0]["events"] == 6 and rows[0]["status"] == "open"
    assert len(await store.events(rows[0]["id"])) == 6
    assert await store.open_targets() == {"p1": "breaker_open"}


async def test_resolution_rules(engine: AsyncEngine) -> None:
    store = IncidentStore(engine)
    first, created = await store.open(kind="model", target="p1|m", severity="major", cause="breaker_open",
                                      notes="n", at=T0, event=("breaker", "closed -> open"))
    assert created
    # an automatic resolution only for a transition after the opening, and only of the named causes
    assert await store.auto_resolve("p1|m", T0 - timedelta(seconds=1), "early", "x") is None
    assert await store.auto_resolve("p1|m", T0 + timedelta(seconds=5), "rate ok", "x", ("error_rate",)) is None
    assert await store.auto_resolve("p1|m", T0 + timedelta(seconds=90), "half_open -> closed", "recovered") == first
    got = await store.get(first)
    assert got is not None and (got["status"], got["resolved_by"], got["duration_s"]) == ("resolved", "auto", 90.0)
    assert (got["provider"], got["model"]) == ("p1", "m")
    # the automatically resolved incident takes one note, then no more
    assert await store.resolve(first, "upstream outage", "admin", T0 + timedelta(minutes=5)) == "noted"
    assert await store.resolve(first, "another", "admin", T0 + timedelta(minutes=6)) is None
    got = await store.get(first)
    assert got is not None and (got["resolved_by"], got["resolution_note"], got["resolution_note_by"]) == (
        "auto", "upstream outage", "admin")

    # the target may open again once resolved; an admin resolves this one (once)
    second, created = await store.open(kind="model", target="p1|m", severity="major", cause="breaker_open",
                                       notes="n", at=T0 + timedelta(hours=1), event=("breaker", "closed -> open"))
    assert created and second != first
    assert await store.resolve(second, "restarted the upstream", "user:7", T0 + timedelta(hours=2)) == "resolved"
    assert await store.resolve(second, "twice", "admin", T0 + timedelta(hours=3)) is None
    assert await store.resolve(999_999, "none", "admin", T0) is None
    got = await store.get(second)
    assert got is not None and (got["status"], got["resolved_by"], got["duration_s"]) == ("resolved", "user:7", 3600.0)
    assert await store.open_targets() == {}

    items, open_now = await store.overlapping(T0 + timedelta(minutes=30), T0 + timedelta(hours=5))
    assert [i["id"] for i in items] == [second] and open_now == 0
    async with engine.connect() as conn:
        kinds = [r[0] for r in await conn.execute(sa.select(incident_events.c.kind)
                                                   .where(incident_events.c.incident_id == first)
                                                   .order_by(incident_events.c.id))]
    assert kinds == ["breaker", "resolved", "note"]


async def test_a_flood_is_sampled_but_counted(engine: AsyncEngine) -> None:
    store = ErrorStore(engine)
    flood = [_event(T0 + timedelta(milliseconds=i), f"bad key {i}", status=401, provider=None,
                    code="invalid_api_key") for i in range(50)]
    rare = _event(T0, "upstream down")
    assert await store.write([*flood, rare], per_pattern=5) == 45
    pats, _ = await store.patterns(10, 0)
    assert [(p["code"], p["count"]) for p in pats] == [("invalid_api_key", 50), ("upstream_error", 1)]
    rows, total = await store.recent(100)
    assert total == 6 and [r["message"] for r in rows[:5]] == [f"bad key {i}" for i in range(49, 44, -1)]
