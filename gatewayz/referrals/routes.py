"""The caller's referral code and stats; validating and applying someone else's code."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gatewayz.api.deps import ContainerDep, User
from gatewayz.billing.money import nanos_to_json
from gatewayz.container import Container
from gatewayz.referrals.service import REASONS

router = APIRouter(tags=["referrals"])


def _upper(v: Any) -> Any:
    return v.strip().upper() if isinstance(v, str) else v


class ReferralCodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z0-9]{4,16}$")]


def _terms(c: Container) -> dict[str, Any]:
    s = c.referrals
    return {"bonus": nanos_to_json(s.bonus_nanos), "min_purchase": nanos_to_json(s.min_purchase_nanos),
            "currency": "USD"}


@router.get("/referral/code")
@router.post("/referral/generate")
async def referral_code(user: User, c: ContainerDep) -> dict[str, Any]:
    """The caller's referral code, created on the first call (the same code every time after)."""
    assert user.user_id is not None
    own = await c.referrals.code(user.user_id)
    return {"code": own.code, "uses": own.uses, "max_uses": c.referrals.config.max_uses, **_terms(c)}


@router.post("/referral/validate")
async def validate(body: ReferralCodeIn, user: User, c: ContainerDep) -> dict[str, Any]:
    """Whether the caller can apply the code now. Always 200: `valid`, and when false a `reason` (one of
    not_found, self_referral, already_referred, already_purchased, mutual_referral, exhausted)."""
    assert user.user_id is not None
    _, why = await c.referrals.check(user.user_id, body.code)
    out: dict[str, Any] = {"code": body.code, "valid": why is None, "reason": why}
    if why is not None:
        out["message"] = REASONS[why][2].format(code=body.code)
    else:
        out.update(_terms(c))
    return out


@router.post("/referral/apply")
async def apply(body: ReferralCodeIn, user: User, c: ContainerDep) -> dict[str, Any]:
    """Apply a referral code to the caller's account: once, not their own, before their first purchase. Both
    sides get the bonus when the caller's first purchase of at least `min_purchase` is recorded."""
    assert user.user_id is not None
    await c.referrals.apply(user.user_id, body.code)
    return {"code": body.code, "applied": True, **_terms(c)}


@router.get("/referral/stats")
async def stats(user: User, c: ContainerDep) -> dict[str, Any]:
    """The caller's code, its uses, referees (e-mail masked), conversions and the bonus earned."""
    assert user.user_id is not None
    out = await c.referrals.stats(user.user_id)
    out["bonus_earned"] = nanos_to_json(out["bonus_earned_nanos"])
    return {**out, **_terms(c)}
