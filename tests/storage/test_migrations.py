"""Alembic migrations match the schema in code, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gatewayz.storage.db import create_engine
from gatewayz.storage.migrate import pending
from gatewayz.storage.schema import metadata


async def test_migrations_match_models_and_nothing_pending(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert not await pending(engine)

        def diff(sync_conn: Any) -> list[Any]:
            ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
            return compare_metadata(ctx, metadata)

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_fresh_database_is_pending(databases: Any) -> None:
    engine = create_engine(databases.url("sqlite"))
    try:
        assert await pending(engine)
    finally:
        await engine.dispose()


def test_concurrent_migrations_are_safe_on_postgresql(databases: Any) -> None:
    """Several instances starting together on one fresh PostgreSQL database all succeed (an advisory lock
    queues them). SQLite is one machine's file, migrated once by `serve` before its workers start."""
    import asyncio

    from gatewayz.storage.migrate import upgrade

    url = databases.url("postgresql")

    async def race() -> bool:
        engines = [create_engine(url) for _ in range(3)]
        try:
            await asyncio.gather(*(upgrade(e) for e in engines))
            return await pending(engines[0])
        finally:
            for e in engines:
                await e.dispose()

    assert asyncio.run(race()) is False
