"""Admin views of the audit log: the entries, and a verification of the whole chain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from gatewayz.api.deps import ContainerDep, Support

router = APIRouter(tags=["admin"])


@router.get("/admin/audit")
async def entries(_: Support, c: ContainerDep, limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0),
                  action: str | None = Query(None, max_length=64)) -> dict[str, Any]:
    rows, total = await c.audit.entries(limit, offset, action)
    return {"data": rows, "total": total, "limit": limit, "offset": offset}


@router.get("/admin/audit/verify")
async def verify(_: Support, c: ContainerDep) -> dict[str, Any]:
    """Recomputes every hash: `valid: false` names the first row that was altered, removed or relinked."""
    return await c.audit.verify()
