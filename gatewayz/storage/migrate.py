"""Apply and check Alembic migrations on the configured database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

_SCRIPTS = Path(__file__).parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    cfg.attributes["connection"] = connection
    return cfg


MIGRATION_LOCK = 7_311_204_518  # a PostgreSQL advisory lock id: one migrator at a time across instances


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to `revision`. Safe when several instances start at once: on PostgreSQL they
    queue on an advisory lock held for the transaction, and each finds the work done by the first."""
    def run(sync_conn: Any) -> None:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        command.upgrade(alembic_config(sync_conn), revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def pending(engine: AsyncEngine) -> bool:
    """True while the database is behind the newest migration (the readiness probe fails then)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    def current(sync_conn: Any) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    async with engine.connect() as conn:
        return (await conn.run_sync(current)) != head
