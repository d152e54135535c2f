"""Referral rules: who may apply which code, and the bonus on a referee's first qualifying purchase."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from gatewayz.audit.store import AuditLog
from gatewayz.billing.credits import CreditAuthority
from gatewayz.billing.money import usd_to_nanos
from gatewayz.errors import Conflict, GatewayError, InvalidRequest, NotFound
from gatewayz.referrals.store import ReferralCode, ReferralStore
from gatewayz.settings import ReferralsConfig

log = logging.getLogger("gatewayz.referrals")

# Why a code cannot be applied, in the order they are checked: error class, error code, message.
REASONS: dict[str, tuple[type[GatewayError], str, str]] = {
    "not_found": (NotFound, "referral_code_not_found", "No referral code {code}."),
    "self_referral": (InvalidRequest, "self_referral", "You cannot apply your own referral code."),
    "already_referred": (InvalidRequest, "already_referred", "A referral code is already applied to this account."),
    "already_purchased": (InvalidRequest, "already_purchased",
                          "Referral codes can be applied only before the account's first purchase."),
    "mutual_referral": (InvalidRequest, "mutual_referral",
                        "The owner of {code} was referred by you; a referral cannot go both ways."),
    "exhausted": (InvalidRequest, "referral_code_exhausted", "Referral code {code} has reached its number of uses."),
}
RETRIES = 3


def refused(reason: str, code: str) -> GatewayError:
    cls, err_code, message = REASONS[reason]
    return cls(message.format(code=code), param="code", code=err_code)


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:2]}***@{domain}"


class ReferralService:
    def __init__(self, store: ReferralStore, credits: CreditAuthority, audit: AuditLog,
                 config: ReferralsConfig) -> None:
        self._store = store
        self._credits = credits
        self._audit = audit
        self.config = config
        self.bonus_nanos = usd_to_nanos(config.bonus_usd)
        self.min_purchase_nanos = usd_to_nanos(config.min_purchase_usd)

    async def code(self, user_id: int) -> ReferralCode:
        return await self._store.ensure_code(user_id, datetime.now(UTC))

    async def check(self, user_id: int, code: str) -> tuple[ReferralCode | None, str | None]:
        """The code's owner, and why `user_id` cannot apply it now (None: they can)."""
        owner = await self._store.by_code(code)
        if owner is None:
            return None, "not_found"
        if owner.user_id == user_id:
            return owner, "self_referral"
        if await self._store.referral_of(user_id) is not None:
            return owner, "already_referred"
        if await self._store.has_purchased(user_id):
            return owner, "already_purchased"
        if await self._store.is_referred_by(owner.user_id, user_id):
            return owner, "mutual_referral"
        if owner.uses >= self.config.max_uses:
            return owner, "exhausted"
        return owner, None

    async def apply(self, user_id: int, code: str) -> int:
        """Record `code` as the caller's referral; returns the referrer's user id."""
        for _ in range(RETRIES):
            referrer = await self._store.apply(user_id, code, self.config.max_uses, datetime.now(UTC))
            if referrer is not None:
                await self._audit.append(f"user:{user_id}", "referral.apply", f"user:{referrer}", {"code": code})
                return referrer
            why = (await self.check(user_id, code))[1]
            if why is not None:
                raise refused(why, code)
        raise Conflict(f"Referral code {code} is being applied by many users at once; try again.", param="code",
                       code="referral_busy")

    async def on_purchase(self, user_id: int, amount_nanos: int) -> int | None:
        """Called once a purchase (a ledger credit of type `purchase`) has committed. Pays the referral bonus
        to both sides if this is the referee's first purchase of at least referrals.min_purchase_usd;
        idempotent (a referee's bonus is paid at most once). Returns the bonus paid to each side, or None.
        Never raises: the purchase stands whatever happens here, and a bonus that could not be written now
        is paid on the referee's next qualifying purchase."""
        if amount_nanos < self.min_purchase_nanos:
            return None
        try:
            referrer = await self._store.reward(user_id, amount_nanos, self.bonus_nanos, datetime.now(UTC))
        except Exception:  # noqa: BLE001 - see the docstring: the caller's purchase must not fail here
            log.exception("paying the referral bonus of user %d failed; it is paid on a later purchase", user_id)
            return None
        if referrer is None:
            return None
        self._credits.credited(user_id, self.bonus_nanos)
        self._credits.credited(referrer, self.bonus_nanos)
        try:
            await self._audit.append("system", "referral.bonus", f"user:{user_id}",
                                     {"referrer": referrer, "nanos": self.bonus_nanos, "purchase_nanos": amount_nanos})
        except Exception:  # noqa: BLE001 - the bonus is paid and in the ledger; only its audit entry is missing
            log.exception("auditing the referral bonus of user %d failed", user_id)
        return self.bonus_nanos

    async def stats(self, user_id: int) -> dict[str, Any]:
        own = await self.code(user_id)
        referees = await self._store.referees(user_id)
        rewarded = [r for r in referees if r["rewarded_at"] is not None]
        mine = await self._store.referral_of(user_id)
        return {"code": own.code, "uses": own.uses, "max_uses": self.config.max_uses,
                "remaining_uses": max(self.config.max_uses - own.uses, 0),
                "total_referred": len(referees), "conversions": len(rewarded),
                "pending": len(referees) - len(rewarded),
                "bonus_earned_nanos": sum(r["bonus_nanos"] or 0 for r in rewarded),
                "referees": [{"email": mask_email(r["email"]), "joined_at": r["created_at"],
                              "rewarded": r["rewarded_at"] is not None, "rewarded_at": r["rewarded_at"]}
                             for r in referees],
                "referred_by": None if mine is None else {"code": mine["code"], "applied_at": mine["created_at"],
                                                          "rewarded": mine["rewarded_at"] is not None}}
