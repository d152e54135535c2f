"""/api/stripe: credit packages (public), Checkout Sessions, subscription changes, payment history, and the
signed webhook (public: Stripe authenticates with its signature, see gatewayz.payments.webhook)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import ContainerDep, User
from gatewayz.billing.money import nanos_to_json

router = APIRouter(prefix="/api/stripe", tags=["payments"])


class PackageChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    package_id: str = Field(min_length=1, max_length=40)


class PlanChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=32)


def _uid(user: Any) -> int:
    assert user.user_id is not None
    return int(user.user_id)


@router.get("/credit-packages")
async def credit_packages(c: ContainerDep) -> dict[str, Any]:
    """Public: the credit packages on sale (1 credit = $0.01) and whether checkout is enabled."""
    return c.stripe.packages()


@router.post("/checkout-session")
async def checkout_session(body: PackageChoice, user: User, c: ContainerDep) -> dict[str, Any]:
    return await c.stripe.checkout(_uid(user), body.package_id)


@router.post("/subscription-checkout")
async def subscription_checkout(body: PlanChoice, user: User, c: ContainerDep) -> dict[str, Any]:
    return await c.stripe.subscription_checkout(_uid(user), body.plan)


@router.post("/subscription/upgrade")
async def upgrade_subscription(body: PlanChoice, user: User, c: ContainerDep) -> dict[str, Any]:
    """Move the caller's Stripe subscription to a dearer plan (prorated, invoiced at once)."""
    return await c.stripe.change_plan(_uid(user), body.plan, "upgrade")


@router.post("/subscription/downgrade")
async def downgrade_subscription(body: PlanChoice, user: User, c: ContainerDep) -> dict[str, Any]:
    """Move the caller's Stripe subscription to a cheaper plan (no proration)."""
    return await c.stripe.change_plan(_uid(user), body.plan, "downgrade")


@router.post("/subscription/cancel")
async def cancel_subscription(user: User, c: ContainerDep) -> dict[str, Any]:
    return await c.stripe.cancel(_uid(user))


@router.get("/payments")
async def payments(user: User, c: ContainerDep, limit: int = Query(20, ge=1, le=100),
                   offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """The caller's payments, newest first, with the real total."""
    rows, total = await c.stripe.store.list(_uid(user), limit, offset)
    return {"data": [{"id": r["id"], "kind": r["kind"], "package_id": r["package_id"], "plan": r["plan"],
                      "amount_usd": r["amount_cents"] / 100, "currency": r["currency"],
                      "credits": r["credit_nanos"] // 10_000_000, "credit_usd": nanos_to_json(r["credit_nanos"]),
                      "status": r["status"], "refunded_usd": r["refunded_cents"] / 100,
                      "checkout_session_id": r["session_id"], "created_at": r["created_at"].isoformat(),
                      "updated_at": r["updated_at"].isoformat()} for r in rows],
            "total": total, "limit": limit, "offset": offset, "has_more": offset + len(rows) < total}


@router.post("/webhook")
async def webhook(request: Request, c: ContainerDep) -> dict[str, Any]:
    """Public, authenticated by the Stripe-Signature header."""
    return await c.stripe_webhooks.receive(await request.body(), request.headers.get("stripe-signature"))
