"""Coupon rules: who may redeem what, and the errors that say why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gatewayz.audit.store import AuditLog
from gatewayz.billing.credits import CreditAuthority
from gatewayz.billing.money import usd_to_nanos
from gatewayz.coupons.store import Coupon, CouponStore, DuplicateCode, Redeemed
from gatewayz.errors import Conflict, GatewayError, InvalidRequest, NotFound, PermissionDenied
from gatewayz.settings import CouponsConfig

# Why a coupon cannot be redeemed, in the order they are checked: the error class and code of a refused
# redemption, and the message (also given by /coupons/validate).
REASONS: dict[str, tuple[type[GatewayError], str]] = {
    "not_found": (NotFound, "No coupon {code}."),
    "inactive": (InvalidRequest, "Coupon {code} is no longer active."),
    "not_for_you": (PermissionDenied, "Coupon {code} is not available to this account."),
    "expired": (InvalidRequest, "Coupon {code} has expired."),
    "already_redeemed": (InvalidRequest, "You have already redeemed coupon {code} as often as it allows."),
    "exhausted": (InvalidRequest, "Coupon {code} has been redeemed as often as it allows."),
}
RETRIES = 3


def refusal(coupon: Coupon | None, used: int, user_id: int, now: datetime) -> str | None:
    """Why `user_id`, who has redeemed `coupon` `used` times, cannot redeem it now; None if they can."""
    if coupon is None:
        return "not_found"
    if not coupon.is_active:
        return "inactive"
    if coupon.user_id is not None and coupon.user_id != user_id:
        return "not_for_you"
    if coupon.expires_at is not None and coupon.expires_at <= now:
        return "expired"
    if used >= coupon.per_user_limit:
        return "already_redeemed"
    if coupon.max_redemptions is not None and coupon.redemptions >= coupon.max_redemptions:
        return "exhausted"
    return None


def refused(reason: str, code: str) -> GatewayError:
    cls, message = REASONS[reason]
    return cls(message.format(code=code), param="code", code=f"coupon_{reason}")


@dataclass(frozen=True, slots=True)
class Check:
    coupon: Coupon | None
    used: int
    reason: str | None


class CouponService:
    def __init__(self, store: CouponStore, credits: CreditAuthority, audit: AuditLog, config: CouponsConfig) -> None:
        self._store = store
        self._credits = credits
        self._audit = audit
        self.config = config

    async def create(self, code: str, amount: Decimal, *, description: str | None, user_id: int | None,
                     max_redemptions: int | None, per_user_limit: int, listed: bool,
                     expires_at: datetime | None, actor: str) -> Coupon:
        if amount > self.config.max_amount_usd:
            raise InvalidRequest(f"A coupon grants at most ${self.config.max_amount_usd} "
                                 "(coupons.max_amount_usd).", param="amount", code="invalid_value")
        try:
            coupon = await self._store.create(code, usd_to_nanos(amount), description=description, user_id=user_id,
                                              max_redemptions=max_redemptions, per_user_limit=per_user_limit,
                                              listed=listed, expires_at=expires_at, now=datetime.now(UTC))
        except DuplicateCode:
            raise Conflict(f"A coupon {code} already exists.", param="code", code="coupon_exists") from None
        await self._audit.append(actor, "coupon.create", f"coupon:{code}",
                                 {"nanos": coupon.amount_nanos, "user_id": user_id})
        return coupon

    async def deactivate(self, code: str, actor: str) -> Coupon:
        coupon = await self._store.deactivate(code)
        if coupon is None:
            raise refused("not_found", code)
        await self._audit.append(actor, "coupon.deactivate", f"coupon:{code}")
        return coupon

    async def check(self, code: str, user_id: int) -> Check:
        coupon = await self._store.get(code)
        used = await self._store.used(coupon.id, user_id) if coupon is not None else 0
        return Check(coupon, used, refusal(coupon, used, user_id, datetime.now(UTC)))

    async def redeem(self, code: str, user_id: int) -> Redeemed:
        """Credit the coupon to `user_id` exactly once per allowed use, or raise why not."""
        for _ in range(RETRIES):
            done = await self._store.redeem(code, user_id, datetime.now(UTC))
            if done is not None:
                self._credits.credited(user_id, done.amount_nanos)
                await self._audit.append(f"user:{user_id}", "coupon.redeem", f"coupon:{code}",
                                         {"nanos": done.amount_nanos, "seq": done.seq})
                return done
            why = (await self.check(code, user_id)).reason
            if why is not None:
                raise refused(why, code)
            # Refused a moment ago but redeemable now (a concurrent redemption rolled back): try again.
        raise Conflict(f"Coupon {code} is being redeemed by many users at once; try again.", param="code",
                       code="coupon_busy")

    async def available(self, user_id: int, limit: int = 200) -> list[tuple[Coupon, int]]:
        return await self._store.available(user_id, datetime.now(UTC), limit)

    async def history(self, user_id: int, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        return await self._store.history(user_id, limit, offset)

    async def listing(self, limit: int, offset: int, active: bool | None) -> tuple[list[Coupon], int]:
        return await self._store.listing(limit, offset, active)
