"""GET /health (always 200; degradation in the body) and GET /health/quick (static)."""

from __future__ import annotations

import os
import resource
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from gatewayz import __version__
from gatewayz.api.deps import ContainerDep, Developer
from gatewayz.storage.migrate import pending
from gatewayz.storage.redis import check as check_redis

router = APIRouter(tags=["health"])
STARTED = time.monotonic()
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


@router.get("/health/ready")
async def ready(c: ContainerDep) -> Response:
    """Readiness for load balancers and Kubernetes: 503 while the database is unreachable or behind the
    newest migration, so no traffic reaches an instance that cannot serve it."""
    try:
        behind = await pending(c.db)
    except Exception as exc:  # noqa: BLE001 - unreachable, whatever the reason
        return JSONResponse({"ready": False, "reason": f"database unreachable ({type(exc).__name__})"}, 503)
    if behind:
        return JSONResponse({"ready": False, "reason": "database migrations pending: run `gatewayz migrate`"}, 503)
    return JSONResponse({"ready": True})


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@router.get("/health/system")
async def system(_: Developer, c: ContainerDep) -> dict[str, Any]:
    """Memory, CPU and connection pools of this worker."""
    times = os.times()
    pool = c.db.pool
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"pid": os.getpid(), "uptime_s": round(time.monotonic() - STARTED, 1),
            "memory": {"rss_bytes": _rss_bytes(), "max_rss_bytes": max_rss},
            "cpu": {"user_s": times.user, "system_s": times.system, "load_average": list(os.getloadavg())},
            "database_pool": {"status": pool.status(), "checked_out": getattr(pool, "checkedout", lambda: None)()},
            "upstream_connections": c.http_pool_stats(),
            "settlements": {"write_failures": c.writer.failures}}
