"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database on the local server.

PostgreSQL is at 127.0.0.1:5432 (trust auth). When CI=true it must be there; elsewhere its tests skip."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

PG_ADMIN_DSN = os.environ.get("GATEWAYZ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


async def _pg_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> str | None:
    """None when reachable, else the reason."""
    try:
        asyncio.run(_pg_exec("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        return f"PostgreSQL at {PG_ADMIN_DSN} is not reachable ({type(exc).__name__}: {exc})"
    return None


class DatabaseFactory:
    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._pg: list[str] = []
        self._pg_reason: str | None | bool = False

    def url(self, backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{self._tmp / (uuid.uuid4().hex + '.db')}"
        if self._pg_reason is False:
            self._pg_reason = postgres_available()
        if self._pg_reason:
            if IN_CI:
                pytest.fail(f"CI=true and {self._pg_reason}")
            pytest.skip(self._pg_reason)
        name = "gwtest_" + uuid.uuid4().hex[:16]
        asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
        self._pg.append(name)
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{name}"

    def cleanup(self) -> None:
        for name in self._pg:
            try:
                asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception:  # noqa: BLE001, S110 - best effort: a leftover test database is harmless
                pass


REDIS_URL = os.environ.get("GATEWAYZ_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require_redis() -> str:
    """The test Redis URL; skips (or fails under CI=true) when Redis is not reachable."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        reason = f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__})"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return REDIS_URL
