"""GET /metrics (Prometheus text, or OpenMetrics with exemplars when asked), GET /api/metrics/parsed and
GET /api/instrumentation/health (is tracing on, and is it exporting; Sentry; logs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gatewayz.api.deps import ContainerDep, get_principal, require_admin
from gatewayz.keys.service import Principal

router = APIRouter(tags=["observability"])


async def _scraper(request: Request, c: ContainerDep) -> None:
    """The admin key, unless `metrics_public` opens the endpoint (for a scraper on a private network)."""
    if c.settings.metrics_public:
        return
    await require_admin(request, await get_principal(request, c), c)


@router.get("/metrics", dependencies=[Depends(_scraper)])
async def metrics(request: Request, c: ContainerDep) -> Response:
    body, content_type = c.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get("/api/metrics/parsed")
async def parsed(_: Annotated[Principal, Depends(require_admin)], c: ContainerDep) -> dict[str, Any]:
    """Every metric as JSON, histograms with p50/p95/p99 estimated from their buckets (null without data)."""
    return c.metrics.snapshot()



@router.get("/api/instrumentation/health")
async def instrumentation(_: Annotated[Principal, Depends(require_admin)], c: ContainerDep) -> dict[str, Any]:
    """Tracing (exporter, endpoint, sampler, spans exported and failed so far), Sentry and log settings."""
    s = c.settings
    tracing = c.tracing.status() if c.tracing is not None else {"enabled": False, "exporter": s.tracing.exporter}
    sentry = c.sentry.status() if c.sentry is not None else {"enabled": False}
    return {"tracing": tracing, "sentry": sentry,
            "logs": {"level": s.log_level, "json": s.log_json, "prompts": s.log_prompts}}
