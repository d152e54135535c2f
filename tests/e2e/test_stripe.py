"""Stripe payments end to end (AC-CC.1.1-8): the gateway talks to a local stand-in of Stripe's API through the
official SDK, and receives webhook events signed with Stripe's scheme."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gatewayz.settings import ConfigError, StripeConfig, load_settings
from gatewayz.storage.schema import credit_transactions, stripe_payments, users
from tests.conftest import GatewayFactory
from tests.e2e.stripe_stub import SECRET_KEY, WEBHOOK_SECRET, StripeStub, event, sign
from tests.e2e.test_credits import select_rows
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer

PRICES = {"starter": "price_starter", "pro": "price_pro"}
TEN_USD = 10 * 10**9


@pytest.fixture
def stub() -> Iterator[StripeStub]:
    with StripeStub() as s:
        yield s


def start(gateway_factory: GatewayFactory, emu_a: Emulator, stub: StripeStub, backend: str = "sqlite") \
        -> GatewayServer:
    config = StripeConfig(secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET, api_base=stub.url,
                          plan_prices=PRICES)
    return gateway_factory([emu_a], backend=backend, stripe=config)


@pytest.fixture
def gw(gateway_factory: GatewayFactory, emu_a: Emulator, stub: StripeStub) -> GatewayServer:
    return start(gateway_factory, emu_a, stub)


def auth(u: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {u['api_key']}"}


def deliver(gw: GatewayServer, payload: str, secret: str = WEBHOOK_SECRET) -> httpx.Response:
    return httpx.post(gw.url + "/api/stripe/webhook", content=payload,
                      headers={"Stripe-Signature": sign(payload, secret), "Content-Type": "application/json"})


def balance(gw: GatewayServer, u: dict[str, Any]) -> int:
    gw.drain()
    rows = select_rows(gw, sa.select(users.c.balance_nanos).where(users.c.id == u["id"]))
    return int(rows[0]["balance_nanos"])


def ledger_of(gw: GatewayServer, u: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    t = credit_transactions
    return select_rows(gw, sa.select(t).where(t.c.user_id == u["id"], t.c.type == kind).order_by(t.c.id))


def checkout(gw: GatewayServer, u: dict[str, Any], package: str = "starter") -> dict[str, Any]:
    r = httpx.post(gw.url + "/api/stripe/checkout-session", headers=auth(u), json={"package_id": package})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def completed(session: dict[str, Any], u: dict[str, Any], pi: str = "pi_1", amount: int = 1000) -> dict[str, Any]:
    return {"id": session["id"], "object": "checkout.session", "mode": "payment", "payment_status": "paid",
            "payment_intent": pi, "amount_total": amount, "client_reference_id": str(u["id"]),
            "metadata": {"user_id": str(u["id"]), "package_id": "starter", "payment_id": str(session["payment_id"])}}


def intent(session: dict[str, Any], u: dict[str, Any], pi: str = "pi_1") -> dict[str, Any]:
    return {"id": pi, "object": "payment_intent", "status": "succeeded", "amount": 1000,
            "metadata": {"user_id": str(u["id"]), "payment_id": str(session["payment_id"])}}


def test_not_configured(gateway: GatewayServer, user: dict[str, Any]) -> None:
    """AC-CC.1.1: the packages are public (1 credit = $0.01); the rest answers a clear 503 until configured."""
    r = httpx.get(gateway.url + "/api/stripe/credit-packages")
    assert r.status_code == 200
    body = r.json()
    assert body["checkout_enabled"] is False and body["credit_value_usd"] == 0.01
    assert {"id": "starter", "credits": 1000, "price_usd": 10.0, "value_usd": 10.0} in body["data"]
    r = httpx.post(gateway.url + "/api/stripe/checkout-session", headers=auth(user), json={"package_id": "starter"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "payments_not_configured"
    assert deliver(gateway, event("charge.succeeded", {"id": "ch_1"})).status_code == 503


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_checkout_credits_once(gateway_factory: GatewayFactory, emu_a: Emulator, stub: StripeStub,
                               backend: str) -> None:
    """AC-CC.1.2/1.3/1.8: a Checkout Session in payment mode; checkout.session.completed credits the package as a
    `purchase`; replays and the payment_intent/charge events of the same payment do not credit again."""
    gw = start(gateway_factory, emu_a, stub, backend)
    u = gw.create_user("1")
    s = checkout(gw, u)
    assert s["url"].startswith("https://checkout.stripe.test/") and s["id"].startswith("cs_test_")
    method, path, form = stub.requests[-1]
    assert (method, path) == ("POST", "/v1/checkout/sessions")
    assert form["mode"] == "payment" and form["client_reference_id"] == str(u["id"])
    assert form["metadata[user_id]"] == str(u["id"]) and form["metadata[package_id]"] == "starter"
    assert form["line_items[0][price_data][unit_amount]"] == "1000"
    pending = httpx.get(gw.url + "/api/stripe/payments", headers=auth(u)).json()
    assert pending["total"] == 1 and pending["data"][0]["status"] == "pending"
    before = balance(gw, u)

    done = event("checkout.session.completed", completed(s, u))
    r = deliver(gw, done)
    assert r.status_code == 200 and r.json()["credited_nanos"] == TEN_USD
    assert balance(gw, u) == before + TEN_USD
    assert deliver(gw, done).json()["duplicate"] is True
    assert deliver(gw, event("payment_intent.succeeded", intent(s, u))).json()["handled"] is False
    charge = {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "amount": 1000, "paid": True}
    assert deliver(gw, event("charge.succeeded", charge)).status_code == 200
    assert balance(gw, u) == before + TEN_USD
    assert [r["amount_nanos"] for r in ledger_of(gw, u, "purchase")] == [TEN_USD]
    row = httpx.get(gw.url + "/api/stripe/payments", headers=auth(u)).json()["data"][0]
    assert row["status"] == "succeeded" and row["credits"] == 1000 and row["amount_usd"] == 10.0


def test_payment_intent_alone_credits(gw: GatewayServer) -> None:
    """AC-CC.1.3: payment_intent.succeeded credits too when it arrives first; the session event then does not."""
    u = gw.create_user("1")
    s = checkout(gw, u)
    before = balance(gw, u)
    assert deliver(gw, event("payment_intent.succeeded", intent(s, u, "pi_9"))).json()["handled"] is True
    assert balance(gw, u) == before + TEN_USD
    assert deliver(gw, event("checkout.session.completed", completed(s, u, "pi_9"))).json()["handled"] is False
    assert balance(gw, u) == before + TEN_USD


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_duplicate_deliveries(gateway_factory: GatewayFactory, emu_a: Emulator, stub: StripeStub,
                                         backend: str) -> None:
    gw = start(gateway_factory, emu_a, stub, backend)
    u = gw.create_user("1")
    s1, s2 = checkout(gw, u), checkout(gw, u)
    before = balance(gw, u)
    same = event("checkout.session.completed", completed(s1, u, "pi_a"))
    mixed = [event("checkout.session.completed", completed(s2, u, "pi_b")),
             event("payment_intent.succeeded", intent(s2, u, "pi_b"))]

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            payloads = [same] * 6 + mixed * 3
            rs = await asyncio.gather(*(client.post(gw.url + "/api/stripe/webhook", content=p,
                                                    headers={"Stripe-Signature": sign(p)}) for p in payloads))
            return [r.status_code for r in rs]
    assert set(asyncio.run(burst())) == {200}
    assert balance(gw, u) == before + 2 * TEN_USD
    assert len(ledger_of(gw, u, "purchase")) == 2


def test_signatures_and_always_200(gw: GatewayServer) -> None:
    """A wrong or missing signature is refused (400, nothing applied); whatever is signed gets 200 (AC-CC.1.4)."""
    u = gw.create_user("1")
    s = checkout(gw, u)
    before = balance(gw, u)
    done = event("checkout.session.completed", completed(s, u))
    r = deliver(gw, done, secret="whsec_wrong")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_signature"
    assert httpx.post(gw.url + "/api/stripe/webhook", content=done).status_code == 400
    tampered = done.replace('"paid"', '"paid" ')
    r = httpx.post(gw.url + "/api/stripe/webhook", content=tampered, headers={"Stripe-Signature": sign(done)})
    assert r.status_code == 400
    assert balance(gw, u) == before
    assert deliver(gw, "{not json").status_code == 200
    assert deliver(gw, event("customer.created", {"id": "cus_9"})).json()["handled"] is False
    failing = completed(s, u) | {"metadata": {"payment_id": str(2**70)}}   # too big for the database
    r = deliver(gw, event("payment_intent.succeeded", failing))
    assert r.status_code == 200 and r.json()["handled"] is False
    assert deliver(gw, done).json()["credited_nanos"] == TEN_USD


def test_refunds_never_below_zero(gw: GatewayServer) -> None:
    u = gw.create_user("1")
    s = checkout(gw, u)
    deliver(gw, event("checkout.session.completed", completed(s, u, "pi_r")))
    before = balance(gw, u)
    charge = {"id": "ch_r", "object": "charge", "payment_intent": "pi_r", "amount": 1000, "refunded": False}
    half = event("charge.refunded", charge | {"amount_refunded": 500})
    assert deliver(gw, half).json()["debited_nanos"] == TEN_USD // 2
    assert deliver(gw, half).json()["duplicate"] is True
    assert balance(gw, u) == before - TEN_USD // 2

    async def spend() -> None:   # the user spent all but $2 meanwhile
        async with gw.container.db.begin() as conn:
            await conn.execute(users.update().where(users.c.id == u["id"]).values(balance_nanos=2 * 10**9))
    gw.run(spend())
    r = deliver(gw, event("charge.refunded", charge | {"amount_refunded": 1000, "refunded": True})).json()
    assert r["debited_nanos"] == 2 * 10**9 and r["shortfall_nanos"] == 3 * 10**9
    assert balance(gw, u) == 0
    assert [x["amount_nanos"] for x in ledger_of(gw, u, "refund")] == [-TEN_USD // 2, -2 * 10**9]
    row = select_rows(gw, sa.select(stripe_payments).where(stripe_payments.c.id == s["payment_id"]))[0]
    assert row["status"] == "refunded" and row["refund_shortfall_nanos"] == 3 * 10**9


def plan_of(gw: GatewayServer, u: dict[str, Any]) -> dict[str, Any]:
    return httpx.get(gw.url + "/user/plan", headers=auth(u)).json()  # type: ignore[no-any-return]


def test_subscriptions(gw: GatewayServer, stub: StripeStub) -> None:
    """AC-CC.1.6-8: subscription checkout, plan changes from events and from upgrade/downgrade/cancel."""
    u = gw.create_user("1")
    r = httpx.post(gw.url + "/api/stripe/subscription-checkout", headers=auth(u), json={"plan": "starter"})
    assert r.status_code == 200, r.text
    form = stub.requests[-1][2]
    assert form["mode"] == "subscription" and form["line_items[0][price]"] == "price_starter"
    assert form["subscription_data[metadata][plan]"] == "starter"
    bad = httpx.post(gw.url + "/api/stripe/subscription-checkout", headers=auth(u), json={"plan": "enterprise"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "plan_not_purchasable"

    sub = stub.subscription("sub_1", "price_starter", u["id"])
    session = {"id": r.json()["id"], "object": "checkout.session", "mode": "subscription", "payment_status": "paid",
               "subscription": "sub_1", "customer": "cus_1",
               "metadata": {"user_id": str(u["id"]), "plan": "starter", "payment_id": str(r.json()["payment_id"])}}
    assert deliver(gw, event("checkout.session.completed", session)).status_code == 200
    assert plan_of(gw, u)["plan"]["id"] == "starter"
    assert deliver(gw, event("customer.subscription.created", sub)).json()["changed"] is False

    up = httpx.post(gw.url + "/api/stripe/subscription/upgrade", headers=auth(u), json={"plan": "pro"})
    assert up.status_code == 200, up.text
    assert stub.requests[-1][:2] == ("POST", "/v1/subscriptions/sub_1")
    assert stub.requests[-1][2]["items[0][price]"] == "price_pro"
    assert plan_of(gw, u)["plan"]["id"] == "pro"
    wrong = httpx.post(gw.url + "/api/stripe/subscription/downgrade", headers=auth(u), json={"plan": "pro"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "not_an_downgrade"

    # A renewal grants the period's full allowance again.
    async def spend() -> None:
        async with gw.container.db.begin() as conn:
            await conn.execute(users.update().where(users.c.id == u["id"]).values(allowance_nanos=1))
    gw.run(spend())
    gw.container.credits.credited(u["id"], 0)
    invoice = {"id": "in_1", "object": "invoice", "subscription": "sub_1", "billing_reason": "subscription_cycle",
               "amount_paid": 5000, "currency": "usd", "lines": {"data": [{"price": {"id": "price_pro"}}]}}
    assert deliver(gw, event("invoice.paid", invoice)).json()["changed"] is True
    assert plan_of(gw, u)["allowance_nanos"] == 50 * 10**9
    history = httpx.get(gw.url + "/api/stripe/payments", headers=auth(u)).json()
    assert history["total"] == 2 and history["data"][0] | {"created_at": 0, "updated_at": 0, "id": 0} == {
        "id": 0, "kind": "subscription", "package_id": None, "plan": "pro", "amount_usd": 50.0, "currency": "usd",
        "credits": 0, "credit_usd": 0.0, "status": "succeeded", "refunded_usd": 0.0, "checkout_session_id": None,
        "created_at": 0, "updated_at": 0}
    assert history["data"][1]["status"] == "succeeded" and history["data"][1]["plan"] == "starter"

    # Stripe-side change (dashboard): the updated event moves the plan.
    changed = stub.subscription("sub_1", "price_starter", u["id"])
    assert deliver(gw, event("customer.subscription.updated", changed)).status_code == 200
    assert plan_of(gw, u)["plan"]["id"] == "starter"
    # An old subscription's deletion does not touch the current one.
    old = stub.subscription("sub_old", "price_pro", u["id"])
    assert deliver(gw, event("customer.subscription.deleted", old)).json()["handled"] is False
    assert plan_of(gw, u)["plan"]["id"] == "starter"

    cancel = httpx.post(gw.url + "/api/stripe/subscription/cancel", headers=auth(u))
    assert cancel.status_code == 200, cancel.text
    assert stub.requests[-1][:2] == ("DELETE", "/v1/subscriptions/sub_1")
    assert plan_of(gw, u)["plan"]["id"] == "free"
    again = httpx.post(gw.url + "/api/stripe/subscription/cancel", headers=auth(u))
    assert again.status_code == 404 and again.json()["error"]["code"] == "no_subscription"


def test_subscription_deleted_event_back_to_free(gw: GatewayServer, stub: StripeStub) -> None:
    u = gw.create_user("1")
    sub = stub.subscription("sub_2", "price_pro", u["id"])
    assert deliver(gw, event("customer.subscription.created", sub)).json()["plan"] == "pro"
    assert plan_of(gw, u)["plan"]["id"] == "pro"
    gone = event("customer.subscription.deleted", sub | {"status": "canceled"})
    assert deliver(gw, gone).json()["plan"] == "free"
    assert plan_of(gw, u)["plan"]["id"] == "free"
    assert deliver(gw, gone).json()["duplicate"] is True


def test_payments_pagination(gw: GatewayServer) -> None:
    """AC-CC.1.5: the caller's payments, newest first, with amount, date, status and the real total."""
    u, other = gw.create_user("1"), gw.create_user("1")
    ids = [checkout(gw, u, p)["payment_id"] for p in ("starter", "pro", "scale", "starter", "pro")]
    checkout(gw, other)
    page = httpx.get(gw.url + "/api/stripe/payments?limit=2&offset=1", headers=auth(u)).json()
    assert page["total"] == 5 and page["has_more"] is True
    assert [p["id"] for p in page["data"]] == ids[::-1][1:3]
    assert {"amount_usd", "created_at", "status"} <= set(page["data"][0])
    last = httpx.get(gw.url + "/api/stripe/payments?limit=2&offset=4", headers=auth(u)).json()
    assert [p["id"] for p in last["data"]] == [ids[0]] and last["has_more"] is False
    assert httpx.get(gw.url + "/api/stripe/payments?limit=0", headers=auth(u)).status_code == 400
    # An abandoned session expires, a declined attempt fails; a later successful attempt still credits once.
    s = checkout(gw, other)
    expired = {"id": s["id"], "object": "checkout.session", "metadata": {"payment_id": str(s["payment_id"])}}
    assert deliver(gw, event("checkout.session.expired", expired)).json()["handled"] is True
    failed = {"id": "pi_f", "object": "payment_intent", "metadata": {"payment_id": str(ids[0])}}
    assert deliver(gw, event("payment_intent.payment_failed", failed)).json()["handled"] is True
    statuses = [p["status"] for p in httpx.get(gw.url + "/api/stripe/payments", headers=auth(other)).json()["data"]]
    assert statuses == ["expired", "pending"]
    assert httpx.get(gw.url + "/api/stripe/payments?offset=4", headers=auth(u)).json()["data"][0]["status"] == "failed"
    before = balance(gw, u)
    retried = failed | {"status": "succeeded"}
    assert deliver(gw, event("payment_intent.succeeded", retried)).json()["credited_nanos"] == TEN_USD
    assert deliver(gw, event("payment_intent.succeeded", retried)).json()["handled"] is False
    assert balance(gw, u) == before + TEN_USD


def test_settings_from_environment() -> None:
    """Only settings.py reads the environment: STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET switch Stripe on."""
    assert load_settings(env={}).stripe.enabled is False
    assert load_settings(env={"STRIPE_SECRET_KEY": "sk_test_x"}).stripe.enabled is False
    on = load_settings(env={"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}).stripe
    assert on.enabled and on.secret_key == "sk_test_x" and on.webhook_secret == "whsec_x"
    with pytest.raises(ConfigError, match="stripe.plan_prices: unknown plan 'gold'"):
        load_settings(env={}, stripe={"plan_prices": {"gold": "price_1"}})


def test_referral_bonus_on_first_purchase(gw: GatewayServer) -> None:
    alice, bob = gw.create_user("1"), gw.create_user("1")
    code = httpx.get(gw.url + "/referral/code", headers=auth(alice)).json()["code"]
    assert httpx.post(gw.url + "/referral/apply", headers=auth(bob), json={"code": code}).status_code == 200
    a0, b0 = balance(gw, alice), balance(gw, bob)
    s = checkout(gw, bob)
    deliver(gw, event("checkout.session.completed", completed(s, bob, "pi_ref")))
    assert balance(gw, bob) == b0 + 2 * TEN_USD and balance(gw, alice) == a0 + TEN_USD
    s2 = checkout(gw, bob)
    deliver(gw, event("checkout.session.completed", completed(s2, bob, "pi_ref2")))
    assert balance(gw, bob) == b0 + 3 * TEN_USD and balance(gw, alice) == a0 + TEN_USD
