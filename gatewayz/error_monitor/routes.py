"""Admin views of the error monitor under /error-monitor/: recent and critical errors, recurring patterns,
counts over a window, and this worker's monitor. Reads come from the database (every worker's errors), after
this worker writes what it has buffered; other workers' latest errors appear within their flush interval.

The paths of the acceptance criteria (/error-monitor/errors/recent, /errors/critical, /errors/patterns,
/autonomous/status) answer too."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep, Developer, actor_of
from gatewayz.container import Container
from gatewayz.error_monitor.events import CLASSES
from gatewayz.errors import Conflict, NotFound
from gatewayz.monitoring.routes import MAX_HOURS, window_of
from gatewayz.monitoring.sql import Window, utc

router = APIRouter(prefix="/error-monitor", tags=["error monitor"])
log = logging.getLogger("gatewayz.errors")
ErrorClass = Literal["client", "upstream", "gateway", "exception"]


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000)


async def fresh(c: Container) -> None:
    """Write this worker's buffered errors first, so an answer includes everything it has seen."""
    try:
        await c.error_monitor.flush()
    except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("could not write buffered errors before a read: %s", type(exc).__name__)


def window_param(default_hours: float) -> Any:
    """A window dependency: `hours` back from now (or from `end`), or `start` / `end`."""
    def dep(hours: float = Query(default_hours, gt=0, le=MAX_HOURS), start: datetime | None = Query(None),
            end: datetime | None = Query(None)) -> Window:
        return window_of(hours, start, end)
    return Depends(dep)


Span = Annotated[Window, window_param(24)]


def _from_ring(c: Container, limit: int, critical: bool, filters: dict[str, str | None]) -> dict[str, Any]:
    events = [e for e in reversed(c.error_monitor.recent) if (e.critical or not critical)
              and all(v is None or getattr(e, k) == v for k, v in filters.items())]
    data = [{**e.row(), "class": e.error_class} for e in events[:limit]]
    for d in data:
        del d["error_class"]
    return {"source": "worker", "data": data, "total": len(events)}


async def _events(c: Container, limit: int, offset: int, critical: bool, source: str,
                  filters: dict[str, str | None]) -> dict[str, Any]:
    if source == "worker":
        return _from_ring(c, limit, critical, filters)
    await fresh(c)
    data, total = await c.error_monitor.store.recent(limit, offset, critical=critical, filters=filters)
    return {"source": "database", "data": data, "total": total, "limit": limit, "offset": offset}


@router.get("/recent")
@router.get("/errors/recent")
async def recent(_: Developer, c: ContainerDep, limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0),
                 error_class: ErrorClass | None = Query(None, alias="class"), provider: str | None = None,
                 model: str | None = None, source: Literal["database", "worker"] = "database") -> dict[str, Any]:
    """Failed requests and unexpected exceptions, newest first (`source=worker`: this worker's ring only)."""
    filters = {"error_class": error_class, "provider": provider, "model": model}
    return await _events(c, limit, offset, False, source, filters)


@router.get("/critical")
@router.get("/errors/critical")
async def critical(_: Developer, c: ContainerDep, limit: int = Query(50, ge=1, le=1000),
                   offset: int = Query(0, ge=0), provider: str | None = None, model: str | None = None,
                   source: Literal["database", "worker"] = "database") -> dict[str, Any]:
    """Critical errors only (5xx and unexpected exceptions), newest first."""
    return await _events(c, limit, offset, True, source, {"provider": provider, "model": model})


@router.get("/patterns")
@router.get("/errors/patterns")
async def patterns(_: Developer, c: ContainerDep, min_count: int = Query(1, ge=1), since: datetime | None = None,
                   status: Literal["open", "resolved"] | None = None, limit: int = Query(50, ge=1, le=1000),
                   offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """Recurring errors, most frequent first: `min_count` occurrences at least, seen since `since`."""
    await fresh(c)
    data, total = await c.error_monitor.store.patterns(limit, offset, min_count=min_count,
                                                       since=utc(since) if since else None, status=status)
    return {"data": data, "total": total, "limit": limit, "offset": offset}


@router.get("/patterns/{pattern_id}")
async def pattern(pattern_id: int, _: Developer, c: ContainerDep) -> dict[str, Any]:
    await fresh(c)
    found = await c.error_monitor.store.pattern(pattern_id)
    if found is None:
        raise NotFound(f"No error pattern {pattern_id}.", code="pattern_not_found")
    return found


@router.post("/patterns/{pattern_id}/resolve")
async def resolve_pattern(pattern_id: int, body: Resolution, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    """Mark an open pattern resolved with a note; its next occurrence reopens it. Resolving a pattern that
    is not open is a 409."""
    await fresh(c)
    actor = actor_of(admin)
    store = c.error_monitor.store
    if not await store.resolve_pattern(pattern_id, body.note, actor, datetime.now(UTC)):
        if await store.pattern(pattern_id) is None:
            raise NotFound(f"No error pattern {pattern_id}.", code="pattern_not_found")
        raise Conflict(f"Error pattern {pattern_id} is already resolved; it reopens when it occurs again.",
                       code="already_resolved")
    await c.audit.append(actor, "error_pattern.resolve", f"error_pattern:{pattern_id}", {"note": body.note})
    return await store.pattern(pattern_id) or {}


@router.get("/stats")
async def stats(_: Developer, c: ContainerDep, window: Span) -> dict[str, Any]:
    """Errors in the window by class (client 4xx apart from upstream / gateway 5xx and exceptions), status,
    provider, model and code."""
    await fresh(c)
    return {"window": window.json(), **await c.error_monitor.store.stats(window.start, window.end)}


@router.get("/status")
@router.get("/autonomous/status")
async def status(_: Developer, c: ContainerDep) -> dict[str, Any]:
    """The monitor of the worker that answers: running, buffered, written, dropped, last flush."""
    return {"classes": list(CLASSES), **c.error_monitor.status()}


@router.get("/dashboard")
async def dashboard(_: Developer, c: ContainerDep, window: Span) -> dict[str, Any]:
    """The error landscape: the window's counts, the top open patterns and the latest critical errors."""
    await fresh(c)
    store = c.error_monitor.store
    top, open_total = await store.patterns(10, 0, since=window.start, status="open")
    latest, _n = await store.recent(10, critical=True)
    return {"window": window.json(), "stats": await store.stats(window.start, window.end),
            "open_patterns": {"total": open_total, "top": top}, "latest_critical": latest,
            "monitor": c.error_monitor.status()}
