"""Admin JSON views for dashboards under /api/monitoring/, from the usage records of every worker.

Windows: `hours` back from now (or from `end`), or an explicit `start` / `end` (ISO 8601; without an
offset, UTC). A database that cannot be read is a 503, never zeros."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from gatewayz.api.deps import Admin, ContainerDep
from gatewayz.billing.money import usd_to_nanos
from gatewayz.errors import InvalidRequest
from gatewayz.monitoring.anomalies import AnomalyDetector, Rules
from gatewayz.monitoring.grafana import router as grafana_router
from gatewayz.monitoring.queries import MonitoringQueries, RequestFilter
from gatewayz.monitoring.sql import Window, utc

router = APIRouter(tags=["monitoring"])
views = APIRouter(prefix="/api/monitoring")
MAX_HOURS = 24 * 366


def window_of(hours: float, start: datetime | None, end: datetime | None) -> Window:
    stop = utc(end) if end is not None else datetime.now(UTC)
    begin = utc(start) if start is not None else stop - timedelta(hours=hours)
    if begin >= stop:
        raise InvalidRequest("`start` must be before `end`.", param="start", code="invalid_value")
    return Window(begin, stop)


def _window(default_hours: float) -> Any:
    def dep(hours: float = Query(default_hours, gt=0, le=MAX_HOURS), start: datetime | None = Query(None),
            end: datetime | None = Query(None)) -> Window:
        return window_of(hours, start, end)
    return Depends(dep)


def _queries(c: ContainerDep) -> MonitoringQueries:
    return MonitoringQueries(c.db)


Queries = Annotated[MonitoringQueries, Depends(_queries)]
Day = Annotated[Window, _window(24)]


@views.get("/stats/realtime")
async def realtime(_: Admin, q: Queries, minutes: float = Query(5, gt=0, le=1440)) -> dict[str, Any]:
    """The last `minutes`: requests, errors, tokens, cost, latency percentiles, requests/s, per provider."""
    return await q.realtime(Window.last(timedelta(minutes=minutes)))


@views.get("/error-rates")
async def error_rates(_: Admin, q: Queries, window: Day) -> dict[str, Any]:
    """Requests, errors and error rate by provider and by model (requests no provider served: provider null)."""
    return await q.error_rates(window)


@views.get("/cost-analysis")
async def cost_analysis(_: Admin, q: Queries, window: Annotated[Window, _window(24 * 7)],
                        top_users: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    """Cost by model, provider, user (the `top_users` dearest) and UTC day."""
    return await q.cost_analysis(window, top_users)


@views.get("/chat-requests/counts")
async def request_counts(_: Admin, q: Queries, window: Day) -> dict[str, Any]:
    return await q.request_counts(window)


@views.get("/chat-requests/models")
async def request_models(_: Admin, q: Queries, window: Day) -> dict[str, Any]:
    return await q.models(window)


@views.get("/chat-requests")
async def chat_requests(_: Admin, q: Queries, model: str | None = Query(None, max_length=200),
                        provider: str | None = Query(None, max_length=64),
                        status: str | None = Query(None, pattern=r"^(ok|error|[1-5][0-9]{2})$"),
                        user_id: int | None = Query(None, ge=1), start: datetime | None = Query(None),
                        end: datetime | None = Query(None), limit: int = Query(50, ge=1, le=1000),
                        offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """Recent requests, newest first; `total` counts every row matching the filters."""
    f = RequestFilter(model=model, provider=provider, status=status, user_id=user_id,
                      start=utc(start) if start else None, end=utc(end) if end else None)
    return await q.requests(f, limit, offset)


@views.get("/latency/{provider}/{model:path}")
async def latency(_: Admin, q: Queries, provider: str, model: str, window: Day) -> dict[str, Any]:
    """Latency and time-to-first-token percentiles of one model on one provider (successful requests)."""
    return await q.latency(provider, model, window)


@views.get("/anomalies")
async def anomalies(_: Admin, c: ContainerDep, window_minutes: float = Query(5, gt=0, le=1440),
                    baseline_minutes: float = Query(60, gt=0, le=7 * 1440), min_requests: int = Query(5, ge=1),
                    min_error_rate: float = Query(0.2, ge=0, le=1), z_threshold: float = Query(3.0, gt=0),
                    latency_ratio: float = Query(3.0, gt=1), cost_ratio: float = Query(5.0, gt=1),
                    min_cost_usd: Decimal = Query(Decimal(1), ge=0, le=1_000_000, decimal_places=9)
                    ) -> dict[str, Any]:
    """Error-rate, latency and cost spikes: the last `window_minutes` against the `baseline_minutes` before
    (rules in gatewayz/monitoring/anomalies.py)."""
    rules = Rules(window_minutes=window_minutes, baseline_minutes=baseline_minutes, min_requests=min_requests,
                  min_error_rate=min_error_rate, z_threshold=z_threshold, latency_ratio=latency_ratio,
                  cost_ratio=cost_ratio, min_cost_nanos=usd_to_nanos(min_cost_usd))
    return await AnomalyDetector(c.db).detect(rules)


router.include_router(views)
router.include_router(grafana_router)
