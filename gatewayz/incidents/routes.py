"""Downtime incidents under /admin/downtime/: list (paginated, filtered), one incident with its events, its
analysis, statistics (MTTR, availability) and resolution with a note.

Resolving: an open incident is resolved with the admin's note; an incident the gateway resolved on recovery
takes one note from an admin (its `resolved_by` stays "auto"); after that, resolving again is a 409."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query

from gatewayz.api.deps import Admin, ContainerDep, Developer, actor_of
from gatewayz.container import Container
from gatewayz.error_monitor.routes import Resolution, fresh, window_param
from gatewayz.errors import Conflict, NotFound
from gatewayz.incidents.analysis import analysis, statistics
from gatewayz.monitoring.sql import Window

router = APIRouter(prefix="/admin/downtime", tags=["incidents"])
log = logging.getLogger("gatewayz.incidents")


async def _current(c: Container) -> None:
    """Record this worker's queued breaker transitions first, so an answer includes them."""
    try:
        await c.incidents.drain()
    except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("could not record queued breaker transitions before a read: %s", type(exc).__name__)


async def _incident(c: Container, incident_id: int) -> dict[str, Any]:
    found = await c.incidents.store.get(incident_id)
    if found is None:
        raise NotFound(f"No incident {incident_id}.", code="incident_not_found")
    return found


@router.get("/incidents")
async def list_incidents(_: Developer, c: ContainerDep,
                         status: Literal["open", "ongoing", "resolved"] | None = None, target: str | None = None,
                         kind: Literal["provider", "model"] | None = None, limit: int = Query(50, ge=1, le=500),
                         offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """Newest first; `status=ongoing` is the same as `open`."""
    await _current(c)
    data, total = await c.incidents.store.page(limit, offset, "open" if status == "ongoing" else status, target,
                                               kind)
    return {"data": data, "total": total, "limit": limit, "offset": offset}


@router.get("/incidents/{incident_id}")
async def get_incident(incident_id: int, _: Developer, c: ContainerDep) -> dict[str, Any]:
    await _current(c)
    found = await _incident(c, incident_id)
    found["events_log"] = await c.incidents.store.events(incident_id)
    return found


@router.get("/incidents/{incident_id}/analysis")
async def incident_analysis(incident_id: int, _: Developer, c: ContainerDep,
                            lead_s: float = Query(60, ge=0, le=86400),
                            samples: int = Query(50, ge=0, le=1000)) -> dict[str, Any]:
    """Timeline (breaker transitions, error-rate readings, resolution, error samples), error patterns and
    type distribution, affected requests, duration."""
    await _current(c)
    await fresh(c)
    found = await _incident(c, incident_id)
    return await analysis(c.incidents.store, c.error_monitor.store, c.catalog, found, lead_s, samples)


@router.post("/incidents/{incident_id}/resolve")
async def resolve_incident(incident_id: int, body: Resolution, admin: Admin,
                           c: ContainerDep) -> dict[str, Any]:
    await _current(c)
    actor = actor_of(admin)
    outcome = await c.incidents.store.resolve(incident_id, body.note, actor, datetime.now(UTC))
    if outcome is None:
        found = await _incident(c, incident_id)
        raise Conflict(f"Incident {incident_id} is already resolved (by {found['resolved_by']}) with a note.",
                       code="already_resolved")
    await c.audit.append(actor, f"incident.{'resolve' if outcome == 'resolved' else 'note'}",
                         f"incident:{incident_id}", {"note": body.note})
    return await _incident(c, incident_id)


@router.get("/statistics")
async def downtime_statistics(_: Developer, c: ContainerDep,
                              window: Annotated[Window, window_param(24 * 7)]) -> dict[str, Any]:
    """Over the window (default the last 7 days): incidents, open now, MTTR, and per target the downtime and
    an availability estimate."""
    await _current(c)
    return {**await statistics(c.incidents.store, window), "tracker": c.incidents.status()}
