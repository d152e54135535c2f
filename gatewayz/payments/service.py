"""Stripe through its official SDK: Checkout Sessions for credit packages and subscriptions, and changing or
cancelling a user's subscription. Webhook events are applied by gatewayz.payments.webhook."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import stripe

from gatewayz.billing.money import usd_to_nanos
from gatewayz.errors import InvalidRequest, NotFound, ServiceUnavailable, UpstreamFailed
from gatewayz.payments.store import PaymentStore, Subscription
from gatewayz.plans.service import PlanService
from gatewayz.settings import CreditPackage, StripeConfig

log = logging.getLogger("gatewayz.payments")
CREDIT_NANOS = usd_to_nanos(Decimal("0.01"))   # 1 credit = $0.01


def cents(usd: Decimal) -> int:
    return int(usd * 100)


def package_json(p: CreditPackage) -> dict[str, Any]:
    return {"id": p.id, "credits": p.credits, "price_usd": float(p.price_usd),
            "value_usd": float(Decimal(p.credits) / 100)}


class StripeService:
    def __init__(self, config: StripeConfig, store: PaymentStore, plans: PlanService) -> None:
        self.config = config
        self.store = store
        self.plans = plans
        self._client: stripe.StripeClient | None = None
        self._http: stripe.AIOHTTPClient | None = None

    def client(self) -> stripe.StripeClient:
        if not self.config.enabled:
            raise ServiceUnavailable("Stripe payments are not configured on this gateway (set STRIPE_SECRET_KEY "
                                     "and STRIPE_WEBHOOK_SECRET, or stripe.secret_key and stripe.webhook_secret).",
                                     code="payments_not_configured")
        if self._client is None:
            assert self.config.secret_key is not None
            bases: dict[str, str] = {"api": self.config.api_base} if self.config.api_base else {}
            self._http = stripe.AIOHTTPClient(timeout=self.config.timeout_s)
            self._client = stripe.StripeClient(self.config.secret_key, base_addresses=bases,  # type: ignore[arg-type]
                                               http_client=self._http, max_network_retries=1)
        return self._client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]

    def packages(self) -> dict[str, Any]:
        return {"data": [package_json(p) for p in self.config.credit_packages], "currency": self.config.currency,
                "credit_value_usd": 0.01, "checkout_enabled": self.config.enabled}

    def package(self, package_id: str) -> CreditPackage:
        for p in self.config.credit_packages:
            if p.id == package_id:
                return p
        raise InvalidRequest(f"No credit package {package_id!r}; GET /api/stripe/credit-packages lists them.",
                             param="package_id", code="unknown_package")

    def price_of(self, plan: str) -> str:
        if plan not in self.plans.book.plans:
            raise InvalidRequest(f"No plan {plan!r}; GET /plans lists them.", param="plan", code="unknown_plan")
        price = self.config.plan_prices.get(plan)
        if price is None:
            raise InvalidRequest(f"Plan {plan!r} cannot be bought through Stripe (no Stripe price is configured "
                                 "for it).", param="plan", code="plan_not_purchasable")
        return price

    def plan_of_price(self, price_id: str | None) -> str | None:
        for plan, price in self.config.plan_prices.items():
            if price == price_id:
                return plan
        return None

    async def checkout(self, user_id: int, package_id: str) -> dict[str, Any]:
        client = self.client()
        p = self.package(package_id)
        nanos = p.credits * CREDIT_NANOS
        pid = await self.store.create(user_id, "credits", cents(p.price_usd), nanos, self.config.currency,
                                      package_id=p.id)
        meta = {"user_id": str(user_id), "package_id": p.id, "payment_id": str(pid), "credits": str(p.credits)}
        params: dict[str, Any] = {
            "mode": "payment", "client_reference_id": str(user_id), "metadata": meta,
            "payment_intent_data": {"metadata": meta},
            "success_url": self.config.success_url, "cancel_url": self.config.cancel_url,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": self.config.currency, "unit_amount": cents(p.price_usd),
                "product_data": {"name": f"{p.credits} GatewayZ credits"}}}]}
        session = await self._call(pid, client.v1.checkout.sessions.create_async(params))  # type: ignore[arg-type]
        await self.store.update(pid, session_id=session["id"])
        return {"id": session["id"], "url": session["url"], "payment_id": pid, "package": package_json(p)}

    async def subscription_checkout(self, user_id: int, plan: str) -> dict[str, Any]:
        client = self.client()
        price = self.price_of(plan)
        amount = self.plans.book.plans[plan].price_usd_month or Decimal(0)
        pid = await self.store.create(user_id, "subscription", cents(amount), 0, self.config.currency, plan=plan)
        meta = {"user_id": str(user_id), "plan": plan, "payment_id": str(pid)}
        params: dict[str, Any] = {
            "mode": "subscription", "client_reference_id": str(user_id), "metadata": meta,
            "subscription_data": {"metadata": {"user_id": str(user_id), "plan": plan}},
            "line_items": [{"price": price, "quantity": 1}],
            "success_url": self.config.success_url, "cancel_url": self.config.cancel_url}
        session = await self._call(pid, client.v1.checkout.sessions.create_async(params))  # type: ignore[arg-type]
        await self.store.update(pid, session_id=session["id"])
        return {"id": session["id"], "url": session["url"], "payment_id": pid, "plan": plan}

    async def _call(self, payment_id: int | None, call: Any) -> Any:
        try:
            return await call
        except stripe.StripeError as exc:
            if payment_id is not None:
                await self.store.update(payment_id, status="failed")
            log.warning("Stripe refused a request: %s", exc.user_message or exc)
            raise UpstreamFailed(f"Stripe refused the request: {exc.user_message or 'see the gateway log'}",
                                 code="stripe_error") from None

    async def change_plan(self, user_id: int, plan: str, direction: str) -> dict[str, Any]:
        client = self.client()
        price = self.price_of(plan)
        sub = await self.store.subscription_of(user_id)
        if sub is None or sub.status in ("canceled", "incomplete_expired"):
            raise NotFound("You have no active Stripe subscription; POST /api/stripe/subscription-checkout first.",
                           code="no_subscription")
        book = self.plans.book.plans
        old = book[sub.plan].price_usd_month if sub.plan in book else None
        new = book[plan].price_usd_month
        if old is not None and new is not None and (new <= old if direction == "upgrade" else new >= old):
            raise InvalidRequest(f"{plan!r} is not an {direction} from {sub.plan!r}.", param="plan",
                                 code=f"not_an_{direction}")
        current = await self._call(None, client.v1.subscriptions.retrieve_async(sub.subscription_id))
        item = current["items"]["data"][0]["id"]
        params: dict[str, Any] = {
            "items": [{"id": item, "price": price}], "metadata": {"user_id": str(user_id), "plan": plan},
            "proration_behavior": "always_invoice" if direction == "upgrade" else "none"}
        updated = await self._call(None, client.v1.subscriptions.update_async(sub.subscription_id, params))  # type: ignore[arg-type]
        return await self.apply_subscription(updated.to_dict(), actor=f"user:{user_id}")

    async def cancel(self, user_id: int) -> dict[str, Any]:
        client = self.client()
        sub = await self.store.subscription_of(user_id)
        if sub is None or sub.status == "canceled":
            raise NotFound("You have no active Stripe subscription.", code="no_subscription")
        done = await self._call(None, client.v1.subscriptions.cancel_async(sub.subscription_id))
        return await self.apply_subscription(done.to_dict(), actor=f"user:{user_id}", deleted=True)

    async def apply_subscription(self, obj: dict[str, Any], actor: str = "stripe",
                                 deleted: bool = False) -> dict[str, Any]:
        """Bring the gateway in line with a Stripe subscription object: its plan while active, `free` once
        it is cancelled (only if it is the user's current subscription)."""
        sub_id = str(obj["id"])
        known = await self.store.by_subscription(sub_id)
        meta = obj.get("metadata") or {}
        user_id = int(meta["user_id"]) if meta.get("user_id") else (known.user_id if known else None)
        if user_id is None:
            log.warning("Stripe subscription %s belongs to no known user; ignored", sub_id)
            return {"handled": False}
        items = (obj.get("items") or {}).get("data") or [{}]
        plan = self.plan_of_price((items[0].get("price") or {}).get("id")) or meta.get("plan") \
            or (known.plan if known else None)
        status = "canceled" if deleted else str(obj.get("status") or "active")
        if plan is None or plan not in self.plans.book.plans:
            log.warning("Stripe subscription %s has no plan this gateway knows; ignored", sub_id)
            return {"handled": False}
        current = await self.store.subscription_of(user_id)
        if status in ("canceled", "unpaid", "incomplete_expired"):
            if current is not None and current.subscription_id != sub_id:
                return {"handled": False, "reason": "not the user's current subscription"}
            await self.store.save_subscription(Subscription(user_id, sub_id, obj.get("customer"), plan, status))
            return await self._assign(user_id, "free", actor) | {"subscription": sub_id, "status": status}
        await self.store.save_subscription(Subscription(user_id, sub_id, obj.get("customer"), plan, status))
        if status in ("active", "trialing"):
            return await self._assign(user_id, plan, actor) | {"subscription": sub_id, "status": status}
        return {"handled": True, "plan": plan, "subscription": sub_id, "status": status}

    async def _assign(self, user_id: int, plan: str, actor: str, renew: bool = False) -> dict[str, Any]:
        account = await self.plans.store.account(user_id)
        if account is None:
            return {"handled": False}
        if account.plan == plan and not renew:
            return {"handled": True, "plan": plan, "changed": False}
        if plan not in self.plans.book.plans:
            return {"handled": False}
        await self.plans.assign(user_id, plan, actor)
        return {"handled": True, "plan": plan, "changed": True}

    async def renew(self, subscription_id: str, price_id: str | None, invoice: dict[str, Any]) -> dict[str, Any]:
        """invoice.paid: keep (or assign) the subscription's plan; a renewal (`subscription_cycle`) grants the
        new period's full allowance through the plans service and appears in the payment history (the first
        invoice is the subscription checkout's payment, already listed)."""
        known = await self.store.by_subscription(subscription_id)
        if known is None:
            return {"handled": False}
        plan = self.plan_of_price(price_id) or known.plan
        cycle = invoice.get("billing_reason") == "subscription_cycle"
        out = await self._assign(known.user_id, plan, "stripe", renew=cycle)
        if cycle:
            paid = invoice.get("amount_paid")
            await self.store.create(known.user_id, "subscription", paid if isinstance(paid, int) else 0, 0,
                                    str(invoice.get("currency") or self.config.currency), plan=plan,
                                    status="succeeded")
        return out
