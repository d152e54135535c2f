"""Grafana SimpleJSON datasource at /prometheus/datasource (admin key as a Bearer token).

Configure a SimpleJSON (or compatible JSON) datasource with URL `<gateway>/prometheus/datasource` and the
header `Authorization: Bearer <admin key>`. Grafana calls `GET <url>/` to test the connection,
`POST <url>/search` for the metric names and `POST <url>/query` for the data; see timeseries.py for the
metrics. Annotations are not served."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep
from gatewayz.errors import InvalidRequest
from gatewayz.monitoring.sql import reading, utc
from gatewayz.monitoring.timeseries import GROUPED, TARGETS, Buckets, Series, SeriesQuery

router = APIRouter(prefix="/prometheus/datasource", tags=["grafana"])
MAX_INTERVAL_MS = 366 * 86_400_000


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    target: str | None = Field(default=None, max_length=200)


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")


class Target(BaseModel):
    model_config = ConfigDict(extra="ignore")
    target: str = Field(default="", max_length=200)
    refId: str | None = Field(default=None, max_length=100)
    type: Literal["timeserie", "timeseries", "table"] = "timeserie"
    hide: bool = False


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    range: TimeRange
    intervalMs: int = Field(default=60_000, ge=1, le=MAX_INTERVAL_MS)
    targets: list[Target] = Field(max_length=50)


@router.get("")
@router.get("/")
async def test_connection(_: Admin, c: ContainerDep) -> dict[str, Any]:
    """Grafana's "Save & test": 200 when the usage data can be read, 503 when the database cannot."""
    async with reading(c.db) as conn:
        await conn.execute(sa.text("SELECT 1"))
    return {"status": "success", "message": "GatewayZ usage data is readable.", "targets": len(TARGETS)}


@router.post("/search")
async def search(_: Admin, body: SearchBody | None = None) -> list[str]:
    """The metric names containing the typed text (every name for an empty text)."""
    text = ((body.target if body else None) or "").lower()
    return [t for t in TARGETS if text in t.lower()]


@router.post("/query")
async def query(_: Admin, c: ContainerDep, body: QueryBody) -> list[dict[str, Any]]:
    start, end = utc(body.range.start), utc(body.range.end)
    if start >= end:
        raise InvalidRequest("range.from must be before range.to.", param="range.from", code="invalid_value")
    wanted = [t for t in body.targets if t.target and not t.hide]
    for i, t in enumerate(body.targets):
        if t in wanted and t.target not in TARGETS:
            raise InvalidRequest(f"Unknown target {t.target!r}; POST /prometheus/datasource/search lists them.",
                                 param=f"targets[{i}].target", code="unknown_target")
    # Nothing has happened after now: a range reaching into the future gets no points there (not zeros).
    buckets = Buckets.fit(start, max(start, min(end, datetime.now(UTC))), body.intervalMs)
    found = await SeriesQuery(c.db).series(buckets, [t.target for t in wanted])
    out: list[dict[str, Any]] = []
    for t in wanted:
        series = found[t.target]
        if t.type == "table":
            out.append(_table(t.target, series))
        else:
            out += [{"target": name, "refId": t.refId, "datapoints": [[v, ts] for v, ts in points]}
                    for name, _, points in series]
    return out


def _table(target: str, series: list[Series]) -> dict[str, Any]:
    columns: list[dict[str, str]] = [{"text": "Time", "type": "time"}]
    if target in GROUPED:
        key = GROUPED[target][0]
        columns += [{"text": key, "type": "string"}, {"text": target, "type": "number"}]
        rows: list[list[Any]] = [[ts, group, v] for _, group, points in series for v, ts in points]
        rows.sort(key=lambda r: (r[0], r[1]))
    else:
        columns.append({"text": target, "type": "number"})
        rows = [[ts, v] for _, _, points in series for v, ts in points]
    return {"type": "table", "columns": columns, "rows": rows}
