"""GET /metrics (Prometheus text, or OpenMetrics with exemplars when asked) and GET /api/metrics/parsed."""

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

