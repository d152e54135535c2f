"""Read-side of incidents: downtime statistics over a window (MTTR, availability per target) and one
incident's analysis (timeline, error patterns and type distribution, affected requests)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gatewayz.catalog.service import Catalog
from gatewayz.error_monitor.store import ErrorStore
from gatewayz.incidents.store import IncidentStore
from gatewayz.monitoring.sql import Window, reading
from gatewayz.storage.schema import usage_records

U = usage_records


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _target_stats(target: str, items: list[dict[str, Any]], window: Window, now: datetime) -> dict[str, Any]:
    downtime = 0.0
    for inc in items:
        end = min(inc["resolved_at"] or now, window.end, now)
        downtime += max((end - max(inc["opened_at"], window.start)).total_seconds(), 0.0)
    resolved = [i["duration_s"] for i in items if i["resolved_at"] is not None and i["resolved_at"] >= window.start]
    span = max(min(window.end, now) - window.start, timedelta(0)).total_seconds()
    return {"target": target, "kind": items[0]["kind"], "incidents": len(items),
            "open": sum(i["status"] == "open" for i in items), "resolved": len(resolved), "mttr_s": _mean(resolved),
            "downtime_s": round(downtime, 3),
            "availability_percent": round(100 * (1 - downtime / span), 4) if span > 0 else None}


async def statistics(store: IncidentStore, window: Window) -> dict[str, Any]:
    """Incidents that were open at some time in the window. MTTR is the mean time from opening to resolution
    of the incidents resolved in the window; availability per target is the share of the window (up to now)
    without an open incident of that target."""
    now = datetime.now(UTC)
    items, open_now = await store.overlapping(window.start, window.end)
    in_window = [i for i in items if i["resolved_at"] is not None and i["resolved_at"] >= window.start]
    durations = [i["duration_s"] for i in in_window]
    by_target: dict[str, list[dict[str, Any]]] = {}
    for inc in items:
        by_target.setdefault(inc["target"], []).append(inc)
    return {
        "window": window.json(), "incidents": len(items), "open_now": open_now,
        "opened": sum(i["opened_at"] >= window.start for i in items), "resolved": len(in_window),
        "resolved_automatically": sum(i["resolved_by"] == "auto" for i in in_window),
        "mttr_s": _mean(durations), "max_ttr_s": max(durations) if durations else None,
        "by_severity": dict(Counter(i["severity"] for i in items)),
        "by_cause": dict(Counter(i["cause"] for i in items)),
        "by_kind": dict(Counter(i["kind"] for i in items)),
        "targets": sorted((_target_stats(t, v, window, now) for t, v in by_target.items()),
                          key=lambda t: (-t["downtime_s"], t["target"])),
    }


def models_of(catalog: Catalog, target: str) -> list[str]:
    """The catalog models that route through the target (a provider, or a provider's upstream model)."""
    provider, _, upstream = target.partition("|")
    return sorted(e.id for e in catalog.entries
                  if any(r.provider == provider and (not upstream or r.upstream_model == upstream) for r in e.routes))


async def failovers(store: IncidentStore, models: list[str], start: datetime, end: datetime) -> tuple[int, int]:
    """Requests to those models in [start, end) in the usage records (requests that reached a provider), and
    how many of them were served only after a failover."""
    where = [U.c.model.in_(models), U.c.created_at >= start, U.c.created_at < end]
    q = sa.select(sa.func.count(),
                  sa.func.coalesce(sa.func.sum(sa.case((sa.and_(U.c.status < 400, U.c.attempts > 1), 1), else_=0)), 0))
    async with reading(store.engine) as conn:
        total, failed_over = (await conn.execute(q.where(*where))).one()
    return int(total), int(failed_over)


async def analysis(store: IncidentStore, errors: ErrorStore, catalog: Catalog, incident: dict[str, Any],
                   lead_s: float, samples: int) -> dict[str, Any]:
    """The incident's window runs from `lead_s` before it opened (when the failures that opened it happened)
    to its resolution (or now). Affected requests: those that failed with a critical error (from the error
    monitor: also the requests refused because every provider was out) and those served only after a
    failover (from the usage records)."""
    now = datetime.now(UTC)
    start = incident["opened_at"] - timedelta(seconds=lead_s)
    end = incident["resolved_at"] or now
    models = models_of(catalog, incident["target"])
    errs = await errors.during(start, end + timedelta(microseconds=1), models, samples)
    timeline = [{"at": e["at"], "type": e["kind"], "detail": e["detail"]} for e in await store.events(incident["id"])]
    timeline += [{"at": e["at"], "type": "error", "detail": f"{e['status']} {e['code']}: {e['message']}"[:500],
                  "request_id": e["request_id"], "provider": e["provider"], "model": e["model"],
                  "pattern_id": e["pattern_id"]} for e in errs["samples"]]
    timeline.sort(key=lambda t: t["at"])
    failed = sum(d["count"] for d in errs["type_distribution"] if d["class"] != "client")
    recorded, failed_over = await failovers(store, models, start, end + timedelta(microseconds=1))
    return {
        "incident": incident, "duration_s": round((end - incident["opened_at"]).total_seconds(), 3),
        "ongoing": incident["resolved_at"] is None,
        "window": {"start": start, "end": end, "lead_s": lead_s}, "models": models,
        "errors": {"total": errs["errors"], "type_distribution": errs["type_distribution"],
                   "patterns": errs["patterns"], "samples_shown": len(errs["samples"])},
        "affected_requests": {"failed": failed, "served_after_failover": failed_over, "affected": failed + failed_over,
                              "requests_recorded": recorded},
        "timeline": timeline,
    }
