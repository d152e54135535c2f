"""The Redis connection (optional): shared state between workers and instances when configured."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis


def connect(url: str) -> aioredis.Redis:
    # Short timeouts: Redis helps but must never hold a request hostage.
    return aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=15)


async def check(client: aioredis.Redis | None) -> dict[str, Any]:
    if client is None:
        return {"status": "not_configured"}
    t0 = time.perf_counter()
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}
