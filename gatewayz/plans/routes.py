"""Plans (public list, admin assignment, the caller's own) and trials (status, partner codes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep, User, actor_of

router = APIRouter()


class AssignPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    plan: str = Field(min_length=1, max_length=32)


class PartnerCode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64)


@router.get("/plans", tags=["plans"])
async def list_plans(c: ContainerDep) -> dict[str, Any]:
    """Public: every plan with its price, monthly allowance, limits and daily cap, and the trial's terms."""
    book = c.plans.book
    return {"data": [p.json() for p in book.plans.values()], "trial": book.trial.json(), "currency": "USD"}


@router.post("/admin/assign-plan", tags=["admin"])
async def assign_plan(body: AssignPlan, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    return await c.plans.assign(body.user_id, body.plan, actor_of(admin))


@router.get("/user/plan", tags=["user"])
async def my_plan(user: User, c: ContainerDep) -> dict[str, Any]:
    """The caller's plan, this period's allowance left, purchased balance, daily cap and today's spend."""
    return await c.plans.plan_status(user)


@router.get("/trial/status", tags=["user"])
async def trial_status(user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    return await c.plans.trial_status(user.user_id)


@router.post("/trial/partner", tags=["user"])
async def start_partner_trial(body: PartnerCode, user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    return await c.plans.start_trial(user.user_id, code=body.code, actor=actor_of(user))


@router.get("/trial/partner/{code}", tags=["plans"])
async def partner_terms(code: str, c: ContainerDep) -> dict[str, Any]:
    """Public, always 200: whether a partner code is valid, and its terms when it is."""
    terms = c.plans.book.partner(code)
    return {"code": code, "valid": terms is not None, **(terms.json() if terms else {})}
