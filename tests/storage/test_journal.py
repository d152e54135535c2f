"""The settlement journal: appended before the answer ends, replayed on start, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gatewayz.billing.credits import MemoryAuthority, SqlAuthority
from gatewayz.billing.journal import SettlementJournal, read
from gatewayz.billing.store import LedgerStore, Settlement
from gatewayz.billing.writer import SettlementWriter
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import credit_holds, credit_transactions, usage_records, users
from gatewayz.users.store import UserStore

USD = 1_000_000_000


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


async def _user(engine: AsyncEngine, credits: int) -> int:
    return (await UserStore(engine).create(f"j{os.urandom(4).hex()}@example.com", "user", credits, "test")).id


def _settlement(user_id: int, rid: str, cost: int, hold: int = 0) -> Settlement:
    return Settlement(user_id=user_id, request_id=rid, cost_nanos=cost, hold_nanos=hold, model="m/x",
                      prompt_tokens=3, completion_tokens=4,
                      usage={"api_key_id": None, "endpoint": "chat", "model": "m/x", "provider": "p",
                             "upstream_model": "x", "stream": True, "status": 200, "error_code": None,
                             "prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 0, "reasoning_tokens": 0,
                             "latency_ms": 1.5, "ttft_ms": None, "attempts": 1})


async def _state(engine: AsyncEngine, user_id: int) -> tuple[int, int, list[tuple[str, int]], dict[str, int], int]:
    async with engine.connect() as conn:
        bal, held = (await conn.execute(sa.select(users.c.balance_nanos, users.c.held_nanos)
                                        .where(users.c.id == user_id))).one()
        t = credit_transactions.c
        ledger = [(r[0], -int(r[1])) for r in await conn.execute(
            sa.select(t.request_id, t.amount_nanos).where(t.user_id == user_id, t.type == "api_usage"))]
        u = usage_records.c
        usage = {r[0]: int(r[1]) for r in await conn.execute(
            sa.select(u.request_id, u.cost_nanos).where(u.user_id == user_id))}
        holds = (await conn.execute(sa.select(sa.func.count()).select_from(credit_holds)
                                    .where(credit_holds.c.user_id == user_id))).scalar_one()
    return int(bal), int(held), ledger, usage, int(holds)


def _files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def _die(journal: SettlementJournal) -> None:
    """What SIGKILL does to a journal: its descriptors close (the lock goes), its files stay."""
    for fd in (journal._fd, journal._lock_fd):   # noqa: SLF001 - simulating the process's death
        assert fd is not None
        os.close(fd)


def test_append_marks_applied_and_truncates(tmp_path: Path) -> None:
    async def run() -> None:
        j = SettlementJournal(tmp_path, 10_000)
        j.open()
        assert j.path is not None
        a, b, c = (j.append(_settlement(1, f"r{i}", 10 * i)) for i in range(3))
        assert [s.request_id for s in read(j.path)] == ["r0", "r1", "r2"]
        j.applied(a)
        j.applied(c)
        await j.sync()   # the applied marks are written
        assert [s.request_id for s in read(j.path)] == ["r1"]
        assert j.path.stat().st_size > 0
        j.applied(b)     # nothing outstanding: the file starts over
        assert j.path.stat().st_size == 0 and j.outstanding == 0
        d = j.append(_settlement(1, "r3", 5))
        assert [(s.request_id, s.cost_nanos) for s in read(j.path)] == [("r3", 5)]
        j.applied(d)
        await j.close()
        assert _files(tmp_path) == []   # a clean stop leaves nothing behind
    asyncio.run(run())


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    j = SettlementJournal(tmp_path, 10_000)
    j.open()
    assert j.path is not None
    j.append(_settlement(1, "whole", 7))
    line = j.path.read_bytes()
    with j.path.open("ab") as f:
        f.write(line.replace(b"whole", b"torn")[: len(line) // 2])   # a crash mid-write
    assert [(s.request_id, s.cost_nanos, s.usage["latency_ms"]) for s in read(j.path)] == [("whole", 7, 1.5)]
    _die(j)


async def test_replay_is_idempotent_and_capped(engine: AsyncEngine, tmp_path: Path) -> None:
    store = LedgerStore(engine)
    try:
        uid = await _user(engine, 100)
        dead = SettlementJournal(tmp_path, 10_000)
        dead.open()
        for rid, cost in (("applied", 30), ("lost", 40), ("too-much", 50)):
            dead.append(_settlement(uid, rid, cost))
        # "applied" committed before the process died, its mark did not make it to the file.
        assert await store.apply([_settlement(uid, "applied", 30)]) == [30]
        _die(dead)

        live = SettlementJournal(tmp_path, 10_000)
        out = await live.replay(store)
        assert (out.journals, out.settlements, out.charged) == (1, 3, 40 + 30)
        bal, held, ledger, usage, _ = await _state(engine, uid)
        # once each; the last one capped at what was left: never below zero
        assert bal == 0 and held == 0
        assert sorted(ledger) == [("applied", 30), ("lost", 40), ("too-much", 30)]
        assert usage == dict(ledger)
        assert _files(tmp_path) == []   # the dead journal and its lock are gone

        # The same journal replayed again (a crash during the first replay) charges nothing more.
        again = SettlementJournal(tmp_path, 10_000)
        again.open()
        for rid, cost in (("applied", 30), ("lost", 40)):
            again.append(_settlement(uid, rid, cost))
        _die(again)
        out = await SettlementJournal(tmp_path, 10_000).replay(store)
        assert (out.settlements, out.charged) == (2, 0)
        assert (await _state(engine, uid))[:3] == (bal, held, ledger)
    finally:
        store.close()


async def test_replay_releases_the_sql_hold(engine: AsyncEngine, tmp_path: Path) -> None:
    store = LedgerStore(engine)
    writer = SettlementWriter(store, 5_000)
    try:
        uid = await _user(engine, USD)
        other = await store.hold(uid, "other", USD // 2, datetime.now(UTC) + timedelta(hours=1))
        assert other is not None
        dead = SettlementJournal(tmp_path, 10_000)
        dead.open()
        authority = SqlAuthority(store, writer, 3600, journal=dead)
        hold = await authority.reserve(uid, "mine", USD // 4)
        # settled (the answer went out), its write not done yet when the process dies
        assert authority.settle(hold, _settlement(uid, "mine", USD)) == USD // 4   # capped at the hold
        _die(dead)
        for task in list(writer._tasks):   # noqa: SLF001 - the dead process's write never ran
            task.cancel()
        await asyncio.gather(*writer._tasks, return_exceptions=True)   # noqa: SLF001
        assert (await _state(engine, uid))[1] == USD // 2 + USD // 4

        out = await SettlementJournal(tmp_path, 10_000).replay(store)
        assert out.charged == USD // 4
        bal, held, ledger, usage, holds = await _state(engine, uid)
        # the hold is released in the charge's transaction (the sweeper has nothing to release twice);
        # the other request's hold is untouched
        assert (bal, held, holds) == (USD - USD // 4, USD // 2, 1)
        assert ledger == [("mine", USD // 4)] and usage == {"mine": USD // 4}
    finally:
        await writer.close()
        store.close()


async def test_memory_authority_journals_until_written(engine: AsyncEngine, tmp_path: Path) -> None:
    store = LedgerStore(engine)
    writer = SettlementWriter(store, 50)
    journal = SettlementJournal(tmp_path, 10)
    journal.open()
    journal.start()
    try:
        uid = await _user(engine, USD)
        authority = MemoryAuthority(store, writer, journal=journal)
        holds = [await authority.reserve(uid, f"m{i}", 1000) for i in range(5)]
        for i, h in enumerate(holds):
            authority.settle(h, _settlement(uid, f"m{i}", 100 + i))
        assert journal.path is not None
        assert sorted(s.request_id for s in read(journal.path)) == [f"m{i}" for i in range(5)]
        await authority.drain()
        assert journal.outstanding == 0 and read(journal.path) == []
        assert (await _state(engine, uid))[0] == USD - sum(100 + i for i in range(5))
    finally:
        await writer.close()
        await journal.close()
        store.close()


_LIVE = """
import sys, time
from pathlib import Path
from gatewayz.billing.journal import SettlementJournal
from gatewayz.billing.store import Settlement
j = SettlementJournal(Path(sys.argv[1]), 10_000)
j.open()
j.append(Settlement(user_id=int(sys.argv[2]), request_id="live", cost_nanos=11, model="m/x"))
print("ready", flush=True)
time.sleep(120)
"""


async def test_a_live_process_journal_is_never_replayed(engine: AsyncEngine, tmp_path: Path) -> None:
    store = LedgerStore(engine)
    uid = await _user(engine, 100)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _LIVE, str(tmp_path), str(uid),
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        out = await SettlementJournal(tmp_path, 10_000).replay(store)
        assert out.journals == 0 and (await _state(engine, uid))[0] == 100   # locked: left alone
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        out = await SettlementJournal(tmp_path, 10_000).replay(store)
        assert (out.journals, out.charged) == (1, 11)
        assert (await _state(engine, uid))[0] == 89
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        store.close()
