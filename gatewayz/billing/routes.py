"""Admin credit grants."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep, User, actor_of
from gatewayz.billing.money import nanos_to_json, usd_to_nanos
from gatewayz.billing.store import PURCHASE, UnknownUser
from gatewayz.errors import NotFound

router = APIRouter(tags=["credits"])
MAX_GRANT_USD = Decimal("1000000")


class CreditGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    amount: Decimal = Field(gt=0, le=MAX_GRANT_USD, decimal_places=9)
    description: str | None = Field(default=None, max_length=500)
    # "purchase": money the user paid (recorded by hand until a payment provider records it); the first
    # large enough one pays a pending referral bonus.
    type: Literal["admin_credit", "purchase"] = "admin_credit"


@router.post("/credits/add")
async def add_credits(body: CreditGrant, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    amount = usd_to_nanos(body.amount)
    try:
        after = await c.ledger.add(body.user_id, amount, body.type, actor=actor_of(admin),
                                   description=body.description)
    except UnknownUser:
        raise NotFound(f"No user {body.user_id}.", code="user_not_found") from None
    c.credits.credited(body.user_id, amount)
    await c.audit.append(actor_of(admin), "credits.add", f"user:{body.user_id}", {"nanos": amount, "type": body.type})
    del after  # the authority knows settlements not yet written
    bonus = await c.referrals.on_purchase(body.user_id, amount) if body.type == PURCHASE else None
    balance = await c.credits.balance(body.user_id)
    return {"user_id": body.user_id, "type": body.type, "added": nanos_to_json(amount),
            "referral_bonus": nanos_to_json(bonus) if bonus else None, "balance": nanos_to_json(balance),
            "currency": "USD"}


@router.get("/credits/transactions")
async def transactions(user: User, c: ContainerDep, limit: int = Query(50, ge=1, le=1000),
                       offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """The caller's ledger, newest first; `total` counts every row, not the page."""
    assert user.user_id is not None
    await c.credits.drain()  # include settlements still being written
    rows, total = await c.ledger.transactions(user.user_id, limit, offset)
    data = [{"id": r["id"], "type": r["type"], "amount": nanos_to_json(r["amount_nanos"]),
             "amount_nanos": r["amount_nanos"], "balance_after": nanos_to_json(r["balance_after_nanos"]),
             # The allowance part (subscription allowance or trial credit): grants, expiries, usage paid from it.
             "allowance_amount": nanos_to_json(r["allowance_nanos"]), "allowance_amount_nanos": r["allowance_nanos"],
             "allowance_after": nanos_to_json(r["allowance_after_nanos"])
             if r["allowance_after_nanos"] is not None else None,
             "request_id": r["request_id"], "model": r["model"], "prompt_tokens": r["prompt_tokens"],
             "completion_tokens": r["completion_tokens"], "description": r["description"],
             "created_at": r["created_at"]} for r in rows]
    return {"data": data, "total": total, "limit": limit, "offset": offset}


@router.get("/v1/generation")
async def generation(user: User, c: ContainerDep, id: str = Query(min_length=1, max_length=128)) -> dict[str, Any]:
    """Cost, tokens, provider, latency and status of one of the caller's past requests (by X-Request-ID)."""
    assert user.user_id is not None
    await c.credits.drain()
    rec = await c.ledger.usage_record(user.user_id, id)
    if rec is None:
        raise NotFound(f"No request {id!r} for this account.", param="id", code="generation_not_found")
    return {"data": {"id": rec["request_id"], "model": rec["model"], "provider": rec["provider"],
                     "upstream_model": rec["upstream_model"], "endpoint": rec["endpoint"], "stream": rec["stream"],
                     "status": rec["status"], "error_code": rec["error_code"],
                     "prompt_tokens": rec["prompt_tokens"], "completion_tokens": rec["completion_tokens"],
                     "cached_tokens": rec["cached_tokens"], "reasoning_tokens": rec["reasoning_tokens"],
                     "cost": nanos_to_json(rec["cost_nanos"]), "cost_nanos": rec["cost_nanos"],
                     "latency_ms": rec["latency_ms"], "ttft_ms": rec["ttft_ms"], "attempts": rec["attempts"],
                     "api_key_id": rec["api_key_id"], "created_at": rec["created_at"]}}
