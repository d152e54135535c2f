"""Admin credit grants, adjustments and refunds (capped per change and per admin per 24 hours); the caller's
ledger and past requests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep, User, actor_of
from gatewayz.billing.admin import (
    ADJUSTMENT,
    REFUND,
    CapExceeded,
    Caps,
    Change,
    RefundTooLarge,
    UnknownRequest,
    apply_change,
)
from gatewayz.billing.money import nanos_to_json, nanos_to_usd, usd_to_nanos
from gatewayz.billing.store import PURCHASE, NegativeBalance, UnknownUser
from gatewayz.container import Container
from gatewayz.errors import Conflict, InvalidRequest, NotFound, PermissionDenied

router = APIRouter(tags=["credits"])
MAX_GRANT_USD = Decimal("1000000")


class CreditGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    amount: Decimal = Field(gt=0, le=MAX_GRANT_USD, decimal_places=9)
    description: str | None = Field(default=None, max_length=500)
    # "purchase": money the user paid (recorded by hand until a payment provider records it); the first
    # large enough one pays a pending referral bonus. "bonus": a goodwill or promotional grant.
    type: Literal["admin_credit", "purchase", "bonus"] = "admin_credit"


class Adjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    amount: Decimal = Field(ge=-MAX_GRANT_USD, le=MAX_GRANT_USD, decimal_places=9)   # signed USD
    reason: str = Field(min_length=1, max_length=500)


class Refund(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    amount: Decimal = Field(gt=0, le=MAX_GRANT_USD, decimal_places=9)
    reason: str = Field(min_length=1, max_length=500)
    request_id: str | None = Field(default=None, min_length=1, max_length=128)


def _usd(nanos: int) -> str:
    """Exact dollars for a message: $12, $3.5, $0.000000001."""
    text = format(nanos_to_usd(nanos), "f")
    return "$" + (text.rstrip("0").rstrip(".") if "." in text else text)


async def _change(c: Container, change: Change, action: str) -> int:
    """Write an admin change under the caps, tell the credit authority, audit it; returns the nanos moved."""
    caps = Caps(usd_to_nanos(c.settings.billing.admin_max_transaction_usd),
                usd_to_nanos(c.settings.billing.admin_daily_limit_usd))
    if change.amount < 0 or change.request_id is not None:
        await c.credits.drain()  # the balance and the usage records include every finished request
    try:
        await apply_change(c.db, change, caps)
    except UnknownUser:
        raise NotFound(f"No user {change.user_id}.", param="user_id", code="user_not_found") from None
    except CapExceeded as exc:
        if exc.which == "transaction":
            raise PermissionDenied(f"One admin credit change may move at most {_usd(exc.limit)} "
                                   "(billing.admin_max_transaction_usd).", param="amount",
                                   code="admin_transaction_limit",
                                   extra={"limit": nanos_to_json(exc.limit)}) from None
        raise PermissionDenied(f"This admin may move at most {_usd(exc.limit)} in 24 hours "
                               f"(billing.admin_daily_limit_usd); {_usd(exc.remaining)} remains.", param="amount",
                               code="admin_daily_limit", extra={"limit": nanos_to_json(exc.limit),
                                                                "remaining": nanos_to_json(exc.remaining)}) from None
    except NegativeBalance:
        balance = await c.credits.balance(change.user_id)
        raise Conflict(f"The balance is {_usd(balance)}; a debit of {_usd(-change.amount)} would take it below "
                       "zero.", param="amount", code="balance_below_zero",
                       extra={"balance": nanos_to_json(balance)}) from None
    except UnknownRequest:
        raise NotFound(f"No request {change.request_id!r} for user {change.user_id}.", param="request_id",
                       code="generation_not_found") from None
    except RefundTooLarge as exc:
        if exc.refunded is None or exc.refunded:
            done = f" ({_usd(exc.refunded)} of its {_usd(exc.cost or 0)} cost)" if exc.refunded else ""
            raise Conflict(f"Request {change.request_id!r} was already refunded{done}; a request is refunded once.",
                           param="request_id", code="already_refunded") from None
        raise Conflict(f"Request {change.request_id!r} cost {_usd(exc.cost or 0)}; a refund cannot exceed it.",
                       param="amount", code="refund_exceeds_cost",
                       extra={"cost": nanos_to_json(exc.cost or 0)}) from None
    c.credits.credited(change.user_id, change.amount)
    details: dict[str, Any] = {"nanos": change.amount, "type": change.kind}
    if change.kind in (ADJUSTMENT, REFUND):
        details.update(reason=change.description, request_id=change.request_id)
    await c.audit.append(change.actor, action, f"user:{change.user_id}", details)
    return change.amount


async def _result(c: Container, user_id: int, kind: str, moved: int, **more: Any) -> dict[str, Any]:
    balance = await c.credits.balance(user_id)  # the authority knows settlements not yet written
    return {"user_id": user_id, "type": kind, "amount": nanos_to_json(moved), "amount_nanos": moved, **more,
            "balance": nanos_to_json(balance), "currency": "USD"}


@router.post("/credits/adjust")
async def adjust_credits(body: Adjustment, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    """A signed correction of a balance (ledger type admin_adjustment); never below zero; a reason is required."""
    amount = usd_to_nanos(body.amount)
    if amount == 0:
        raise InvalidRequest("An adjustment of zero changes nothing.", param="amount", code="invalid_amount")
    moved = await _change(c, Change(body.user_id, amount, ADJUSTMENT, actor_of(admin), body.reason), "credits.adjust")
    return await _result(c, body.user_id, ADJUSTMENT, moved, reason=body.reason)


@router.post("/refund")
async def refund(body: Refund, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    """A refund credit (ledger type refund); given request_id, (part of) that request's charge, once."""
    moved = await _change(c, Change(body.user_id, usd_to_nanos(body.amount), REFUND, actor_of(admin), body.reason,
                                    body.request_id), "credits.refund")
    return await _result(c, body.user_id, REFUND, moved, reason=body.reason, request_id=body.request_id)


@router.post("/credits/add")
async def add_credits(body: CreditGrant, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    amount = await _change(c, Change(body.user_id, usd_to_nanos(body.amount), body.type, actor_of(admin),
                                     body.description), "credits.add")
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
                     "images": rec["images"], "audio_ms": rec["audio_ms"], "characters": rec["characters"],
                     "api_key_id": rec["api_key_id"], "created_at": rec["created_at"]}}
