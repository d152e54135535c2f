"""GET /health (always 200; degradation in the body) and GET /health/quick (static)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import Response

from gatewayz import __version__
from gatewayz.api.deps import ContainerDep
from gatewayz.storage.redis import check as check_redis

router = APIRouter(tags=["health"])
_QUICK = b'{"status":"ok"}'


async def _database(c: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        async with c.db.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure is reported as "down", never raised
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
            "backend": c.db.dialect.name}


@router.get("/health")
async def health(c: ContainerDep) -> dict[str, Any]:
    db = await _database(c)
    redis = await check_redis(c.redis)
    checks = {
        "database": db,
        "redis": redis,
        "providers": {"status": "ok" if c.providers else "none_configured", "configured": len(c.providers),
                      "models": len(c.catalog.entries)},
        "settlements": {"status": "ok" if c.writer.failures == 0 else "degraded", "write_failures": c.writer.failures},
    }
    degraded = db["status"] != "ok" or redis["status"] == "down" or c.writer.failures > 0
    return {"status": "degraded" if degraded else "ok", "version": __version__,
            "timestamp": datetime.now(UTC).isoformat(), "checks": checks}


@router.get("/health/quick")
async def quick() -> Response:
    return Response(_QUICK, media_type="application/json")
