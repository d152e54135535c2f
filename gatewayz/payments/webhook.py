"""Stripe webhook events, verified with the SDK and applied at most once each.

- Signature: `stripe.Webhook.construct_event` with stripe.webhook_secret. A missing or wrong signature is
  refused with 400 (it did not come from Stripe, and a 400 makes a misconfigured secret visible in Stripe's
  dashboard, which retries). Everything signed is answered 200, whatever happens next (AC-CC.1.4): an unknown
  type, a payload we cannot use, or a failure while applying it (logged with the event id; nothing of it is
  kept, so resending it from the dashboard applies it).
- Idempotency: the event id is inserted into stripe_events in the same transaction as a credit or a refund;
  a replay or a concurrent duplicate delivery fails that insert and changes nothing. Plan changes run in
  the plans service's own transactions: their event id is claimed first and released if the change fails.
- Crediting: a credit package is credited once per payment row. checkout.session.completed (paid),
  payment_intent.succeeded and charge.succeeded all settle the row identified by the metadata we put on the
  session and its payment intent (or by the payment intent id); the first one credits, the others only find
  it settled.
- charge.refunded debits the refunded share of the package's credits (ledger type `refund`), never below a zero
  balance: what the balance lacks is recorded on the payment as refund_shortfall_nanos.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayz.billing.credits import CreditAuthority
from gatewayz.errors import InvalidRequest
from gatewayz.payments.service import StripeService
from gatewayz.payments.store import PaymentStore, Refunded, Settled
from gatewayz.referrals.service import ReferralService

log = logging.getLogger("gatewayz.payments")
SETTLING = ("checkout.session.completed", "payment_intent.succeeded", "charge.succeeded")
CLOSING = {"checkout.session.expired": "expired", "payment_intent.payment_failed": "failed"}
SUBSCRIPTION = ("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted")


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


class Webhooks:
    def __init__(self, service: StripeService, store: PaymentStore, credits: CreditAuthority,
                 referrals: ReferralService) -> None:
        self.service = service
        self.store = store
        self.credits = credits
        self.referrals = referrals

    async def receive(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        self.service.client()   # 503 when Stripe is not configured
        secret = self.service.config.webhook_secret
        try:
            stripe.Webhook.construct_event(payload, signature or "", secret or "")
        except stripe.SignatureVerificationError:
            raise InvalidRequest("Stripe webhook signature verification failed.", param="Stripe-Signature",
                                 code="invalid_signature") from None
        except ValueError:
            log.warning("signed Stripe webhook with an unreadable payload; ignored")
            return {"received": True, "handled": False, "error": "unreadable payload"}
        event = json.loads(payload)
        event_id, event_type = event.get("id"), event.get("type")
        obj = ((event.get("data") or {}).get("object")) if isinstance(event.get("data"), dict) else None
        if not isinstance(event_id, str) or not isinstance(event_type, str) or not isinstance(obj, dict):
            log.warning("signed Stripe webhook without id, type or data.object; ignored")
            return {"received": True, "handled": False, "error": "not an event"}
        try:
            return {"received": True, "id": event_id, "type": event_type,
                    **await self._apply(event_id, event_type, obj)}
        except Exception:  # noqa: BLE001 - Stripe must get its 200 (AC-CC.1.4); the failure is logged
            log.exception("applying Stripe event %s (%s) failed; resend it from the Stripe dashboard",
                          event_id, event_type)
            return {"received": True, "id": event_id, "type": event_type, "handled": False,
                    "error": "processing failed (logged)"}

    async def _apply(self, event_id: str, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        if event_type in SETTLING:
            return await self._settle(event_id, event_type, obj)
        if event_type == "charge.refunded":
            return await self._refund(event_id, event_type, obj)
        if event_type in CLOSING:
            return await self._close(event_id, event_type, obj)
        if event_type in SUBSCRIPTION or event_type == "invoice.paid":
            if not await self.store.claim(event_id, event_type):
                return {"handled": False, "duplicate": True}
            try:
                if event_type == "invoice.paid":
                    return await self._invoice(obj)
                return await self.service.apply_subscription(obj, deleted=event_type.endswith(".deleted"))
            except BaseException:
                await self.store.release(event_id)
                raise
        return {"handled": False, "reason": "event type not used"}

    async def _settle(self, event_id: str, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        pi = obj.get("payment_intent") if event_type != "payment_intent.succeeded" else obj.get("id")
        pi = pi if isinstance(pi, str) else None
        if event_type == "checkout.session.completed" and obj.get("payment_status") not in ("paid",
                                                                                             "no_payment_required"):
            return {"handled": False, "reason": "session not paid yet"}
        subscription = obj.get("mode") == "subscription"

        async def effect(conn: AsyncConnection) -> Settled | None:
            row = await self.store.find(conn, payment_id=_int(meta.get("payment_id")),
                                        session_id=obj.get("id") if event_type.startswith("checkout") else None,
                                        payment_intent_id=pi)
            if row is None:
                return None
            return await self.store.settle(conn, int(row["id"]), pi)

        applied, done = await self.store.once(event_id, event_type, effect)
        if not applied:
            return {"handled": False, "duplicate": True}
        out: dict[str, Any] = {"handled": done is not None}
        if done is not None and done.kind == "credits":
            self.credits.credited(done.user_id, done.credit_nanos)
            await self.referrals.on_purchase(done.user_id, done.amount_cents * 10_000_000)
            out.update(payment_id=done.payment_id, credited_nanos=done.credit_nanos)
        if subscription and isinstance(obj.get("subscription"), str):
            sub = {"id": obj["subscription"], "customer": obj.get("customer"), "status": "active",
                   "metadata": meta}
            out.update(await self.service.apply_subscription(sub))
        return out

    async def _close(self, event_id: str, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}

        async def effect(conn: AsyncConnection) -> bool:
            row = await self.store.find(conn, payment_id=_int(meta.get("payment_id")),
                                        session_id=obj.get("id") if event_type.startswith("checkout") else None)
            return row is not None and await self.store.close_pending(conn, int(row["id"]), CLOSING[event_type])

        applied, done = await self.store.once(event_id, event_type, effect)
        return {"handled": bool(done)} if applied else {"handled": False, "duplicate": True}

    async def _refund(self, event_id: str, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        refunded = _int(obj.get("amount_refunded")) or 0
        pi = obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else None
        meta = obj.get("metadata") or {}
        await self.credits.drain()   # pending settlements first, so the balance read is current

        async def effect(conn: AsyncConnection) -> Refunded | None:
            row = await self.store.find(conn, payment_id=_int(meta.get("payment_id")), payment_intent_id=pi)
            return None if row is None else await self.store.refund(conn, row, refunded)

        applied, done = await self.store.once(event_id, event_type, effect)
        if not applied:
            return {"handled": False, "duplicate": True}
        if done is None:
            return {"handled": False}
        if done.debited_nanos:
            self.credits.credited(done.user_id, -done.debited_nanos)
        if done.shortfall_nanos:
            log.warning("refund for user %d exceeds their balance by %d nanos (recorded on the payment)",
                        done.user_id, done.shortfall_nanos)
        return {"handled": True, "debited_nanos": done.debited_nanos, "shortfall_nanos": done.shortfall_nanos}

    async def _invoice(self, obj: dict[str, Any]) -> dict[str, Any]:
        sub = obj.get("subscription")
        if not isinstance(sub, str):   # newer API versions nest it
            sub = (((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription"))
        if not isinstance(sub, str):
            return {"handled": False, "reason": "not a subscription invoice"}
        lines = ((obj.get("lines") or {}).get("data")) or [{}]
        price = lines[0].get("price") or ((lines[0].get("pricing") or {}).get("price_details") or {})
        price_id = price.get("id") or price.get("price") if isinstance(price, dict) else None
        return await self.service.renew(sub, price_id, obj)
