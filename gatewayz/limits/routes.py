"""GET /velocity-mode-status: whether limits are tightened right now, and why (any valid credential)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from gatewayz.api.deps import ContainerDep, get_principal
from gatewayz.keys.service import Principal

router = APIRouter(tags=["limits"])


@router.get("/velocity-mode-status")
async def velocity_mode_status(_: Annotated[Principal, Depends(get_principal)], c: ContainerDep) -> dict[str, Any]:
    """`active` and `multiplier` (the share of every request limit that applies), `since` (epoch seconds of
    the last change of mode), the window's `error_rate`, `requests` and `errors`, and the thresholds."""
    return c.velocity.status()
