"""Admin coupon management, and users validating, redeeming and listing coupons."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep, User
from gatewayz.api.fields import FutureTime
from gatewayz.billing.money import nanos_to_json
from gatewayz.container import Container
from gatewayz.coupons.service import REASONS, refused
from gatewayz.coupons.store import Coupon
from gatewayz.errors import NotFound
from gatewayz.limits.quota import enforce, optional_limit

router = APIRouter(tags=["coupons"])
CODE_PATTERN = r"^[A-Z0-9_-]{3,40}$"


def _normalise(v: Any) -> Any:
    return v.strip().upper() if isinstance(v, str) else v


# Codes are case-insensitive: stored and compared upper-case.
CouponCode = Annotated[str, BeforeValidator(_normalise), Field(pattern=CODE_PATTERN)]


class NewCoupon(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: CouponCode
    amount: Decimal = Field(gt=0, le=Decimal(1_000_000), decimal_places=9)   # USD; coupons.max_amount_usd caps it
    expires_at: FutureTime | None = None
    max_redemptions: int | None = Field(default=None, ge=1, le=1_000_000_000)   # over all users; null: no cap
    per_user_limit: int = Field(default=1, ge=1, le=1000)
    user_id: int | None = Field(default=None, ge=1)   # only this user may redeem (and see) it
    description: str | None = Field(default=None, max_length=500)
    listed: bool = True   # a global coupon shows in every user's GET /coupons/available


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: CouponCode


def coupon_json(k: Coupon) -> dict[str, Any]:
    return {"code": k.code, "amount": nanos_to_json(k.amount_nanos), "amount_nanos": k.amount_nanos,
            "description": k.description, "user_id": k.user_id, "max_redemptions": k.max_redemptions,
            "per_user_limit": k.per_user_limit, "redemptions": k.redemptions, "listed": k.listed,
            "is_active": k.is_active, "expires_at": k.expires_at, "created_at": k.created_at}


async def _throttle(c: Container, user_id: int) -> None:
    """Validate and redeem calls per user per minute, so codes cannot be found by trying many."""
    await enforce(c.limits.limiter, f"u{user_id}:coupons", optional_limit(c.coupons.config.attempts_per_minute, 60),
                  "coupon_attempts", "coupon attempts", code="coupon_attempts")


@router.post("/admin/coupons", status_code=201, tags=["admin"])
async def create_coupon(body: NewCoupon, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    if body.user_id is not None and await c.users.get(body.user_id) is None:
        raise NotFound(f"No user {body.user_id}.", param="user_id", code="user_not_found")
    coupon = await c.coupons.create(body.code, body.amount, description=body.description, user_id=body.user_id,
                                    max_redemptions=body.max_redemptions, per_user_limit=body.per_user_limit,
                                    listed=body.listed, expires_at=body.expires_at, actor="admin")
    return coupon_json(coupon)


@router.get("/admin/coupons", tags=["admin"])
async def list_coupons(admin: Admin, c: ContainerDep, limit: int = Query(50, ge=1, le=1000),
                       offset: int = Query(0, ge=0), active: bool | None = None) -> dict[str, Any]:
    coupons, total = await c.coupons.listing(limit, offset, active)
    return {"data": [coupon_json(k) for k in coupons], "total": total, "limit": limit, "offset": offset}


@router.delete("/admin/coupons/{code}", tags=["admin"])
async def deactivate_coupon(code: str, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    """Stops further redemptions; past ones stay in the ledger and in users' history."""
    code = code.strip().upper()
    if not re.match(CODE_PATTERN, code):
        raise refused("not_found", code)
    return coupon_json(await c.coupons.deactivate(code, actor="admin"))


@router.post("/coupons/validate")
async def validate(body: CodeIn, user: User, c: ContainerDep) -> dict[str, Any]:
    """Whether the caller can redeem the code now. Always 200: `valid`, and when false a `reason` (one of
    not_found, inactive, not_for_you, expired, already_redeemed, exhausted) and a message."""
    assert user.user_id is not None
    await _throttle(c, user.user_id)
    check = await c.coupons.check(body.code, user.user_id)
    k = check.coupon
    out: dict[str, Any] = {"code": body.code, "valid": check.reason is None, "reason": check.reason}
    if check.reason is not None:
        out["message"] = REASONS[check.reason][1].format(code=body.code)
    elif k is not None:
        out.update(amount=nanos_to_json(k.amount_nanos), amount_nanos=k.amount_nanos, description=k.description,
                   expires_at=k.expires_at, remaining_for_you=k.per_user_limit - check.used)
    return out


@router.post("/coupons/redeem")
async def redeem(body: CodeIn, user: User, c: ContainerDep) -> dict[str, Any]:
    """Credits the coupon (ledger type `coupon`). Refusals: 404 coupon_not_found, 403 coupon_not_for_you,
    400 coupon_inactive / coupon_expired / coupon_already_redeemed / coupon_exhausted."""
    assert user.user_id is not None
    await _throttle(c, user.user_id)
    done = await c.coupons.redeem(body.code, user.user_id)
    balance = await c.credits.balance(user.user_id)
    return {"code": done.code, "amount": nanos_to_json(done.amount_nanos), "amount_nanos": done.amount_nanos,
            "balance": nanos_to_json(balance), "balance_nanos": balance, "currency": "USD",
            "redeemed_at": done.at}


@router.get("/coupons/available")
async def available(user: User, c: ContainerDep) -> dict[str, Any]:
    """Coupons the caller can redeem now: listed global ones and those made for them."""
    assert user.user_id is not None
    rows = await c.coupons.available(user.user_id)
    return {"data": [{"code": k.code, "amount": nanos_to_json(k.amount_nanos), "amount_nanos": k.amount_nanos,
                      "description": k.description, "expires_at": k.expires_at, "for_you": k.user_id is not None,
                      "remaining_for_you": k.per_user_limit - used} for k, used in rows]}


@router.get("/coupons/history")
async def history(user: User, c: ContainerDep, limit: int = Query(50, ge=1, le=1000),
                  offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """The caller's redemptions, newest first."""
    assert user.user_id is not None
    rows, total = await c.coupons.history(user.user_id, limit, offset)
    return {"data": [{"code": r["code"], "amount": nanos_to_json(r["amount_nanos"]),
                      "amount_nanos": r["amount_nanos"], "description": r["description"],
                      "redeemed_at": r["created_at"]} for r in rows],
            "total": total, "limit": limit, "offset": offset}
