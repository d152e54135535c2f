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


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    def run(sync_conn: Any) -> None:
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
