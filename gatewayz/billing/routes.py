"""Admin credit grants."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep
from gatewayz.billing.money import nanos_to_json, usd_to_nanos
from gatewayz.billing.store import UnknownUser
from gatewayz.errors import NotFound

router = APIRouter(tags=["credits"])
MAX_GRANT_USD = Decimal("1000000")


class CreditGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    amount: Decimal = Field(gt=0, le=MAX_GRANT_USD, decimal_places=9)
    description: str | None = Field(default=None, max_length=500)


@router.post("/credits/add")
async def add_credits(body: CreditGrant, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    amount = usd_to_nanos(body.amount)
    try:
        after = await c.ledger.add(body.user_id, amount, "admin_credit", actor="admin",
                                   description=body.description)
    except UnknownUser:
        raise NotFound(f"No user {body.user_id}.", code="user_not_found") from None
    c.credits.credited(body.user_id, amount)
    del after  # the authority knows settlements not yet written
    balance = await c.credits.balance(body.user_id)
    return {"user_id": body.user_id, "added": nanos_to_json(amount), "balance": nanos_to_json(balance),
            "currency": "USD"}
