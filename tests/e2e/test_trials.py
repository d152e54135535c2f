"""Trials end to end: the configured trial on user creation, its credit spent first, its expiry (402 for paid
models before any upstream call, free models still served, the unused credit expired in the ledger), the
trial's daily cap, GET /trial/status, partner trials by code (once per user), trials and paid plans."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.e2e.plan_helpers import FREE_MODEL, assert_pools_balance, assign, funds, models, set_clock, user_get
from tests.e2e.test_credits import (
    admin,
    chat_body,
    echo_cost,
    echo_hold,
    emu_prompt_tokens,
    encode,
    post_chat,
    sdk,
    usd,
)
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer

USD = 10**9
PARTNERS = [{"code": "REDBEARD", "credits_usd": "100", "days": 30, "daily_cap_usd": "20", "rpm": 2}]
AUTHORITIES = [pytest.param({}, id="memory"), pytest.param({"authority": "sql"}, id="sql")]


@pytest.fixture(params=AUTHORITIES)
def gw(request: pytest.FixtureRequest, gateway_factory: GatewayFactory, emu_a: Emulator,
       emu_b: Emulator) -> GatewayServer:
    return gateway_factory([emu_a, emu_b], credits=dict(request.param), models=models([emu_a, emu_b]),
                           partner_trials=PARTNERS)


def new_user(gw: GatewayServer, trial: bool = True, credits: str = "0") -> dict[str, Any]:
    r = httpx.post(gw.url + "/admin/users", headers=admin(), timeout=30,
                   json={"email": f"t{uuid.uuid4().hex[:10]}@example.com", "credits": credits, "trial": trial})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def auth(user: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['api_key']}"}


def test_new_user_trial_is_spent_first_and_reported(gw: GatewayServer) -> None:
    before = datetime.now(UTC)
    u = new_user(gw, credits="2")
    trial = u["trial"]
    assert trial["status"] == "active" and trial["active"] is True and trial["source"] == "standard"
    assert trial["credits_remaining_nanos"] == 5 * USD and trial["days_remaining"] == 14
    assert trial["daily_cap"] == 1.0 and trial["spent_today"] == 0
    expires = datetime.fromisoformat(trial["expires_at"])
    assert before + timedelta(days=14) <= expires <= datetime.now(UTC) + timedelta(days=14)
    assert funds(gw, u["api_key"]) == (2 * USD, 5 * USD)
    reply = sdk(gw, u["api_key"]).chat.completions.create(model="test/echo",
                                                           messages=[{"role": "user", "content": "hello"}])
    assert reply.usage is not None
    cost = round(reply.usage.model_extra["cost"] * 1e9)
    assert funds(gw, u["api_key"]) == (2 * USD, 5 * USD - cost)   # the trial credit paid, not the purchase
    status = user_get(gw, u["api_key"], "/trial/status")
    assert status["credits_remaining_nanos"] == 5 * USD - cost and status["spent_today_nanos"] == cost
    ledger = assert_pools_balance(gw, u["id"])
    assert [(r["type"], r["amount_nanos"], r["allowance_nanos"]) for r in ledger] == [
        ("admin_credit", 2 * USD, 0), ("trial", 0, 5 * USD), ("api_usage", 0, -cost)]
    r = httpx.get(gw.url + "/admin/audit", params={"action": "trial.start"}, headers=admin())
    assert [e["target"] for e in r.json()["data"]] == [f"user:{u['id']}"]
    # A user created without a trial has none.
    plain = new_user(gw, trial=False)
    assert plain["trial"] is None
    assert user_get(gw, plain["api_key"], "/trial/status")["status"] == "none"


def test_expired_trial_refuses_paid_models_and_serves_free_ones(gw: GatewayServer, emu_a: Emulator,
                                                                emu_b: Emulator) -> None:
    u = new_user(gw)
    assert post_chat(gw, u["api_key"], chat_body("hello")).status_code == 200
    left = funds(gw, u["api_key"])[1]
    assert 0 < left < 5 * USD
    set_clock(gw, datetime.now(UTC) + timedelta(days=14, minutes=1))
    served = len(emu_a.requests) + len(emu_b.requests)
    with pytest.raises(openai.APIStatusError) as exc:
        sdk(gw, u["api_key"]).chat.completions.create(model="test/echo",
                                                      messages=[{"role": "user", "content": "again"}])
    assert exc.value.status_code == 402
    body = exc.value.body
    assert isinstance(body, dict) and body["code"] == "trial_expired" and body["type"] == "insufficient_quota"
    assert body["balance"] == 0 and body["required"] > 0 and body["plans_url"] == "/plans"
    assert "trial ended" in body["message"] and "GET /plans" in body["message"]
    assert len(emu_a.requests) + len(emu_b.requests) == served   # refused before any upstream call
    free = sdk(gw, u["api_key"]).chat.completions.create(model=FREE_MODEL,
                                                         messages=[{"role": "user", "content": "free"}])
    assert free.choices[0].message.content
    ledger = assert_pools_balance(gw, u["id"])
    assert [(r["type"], r["allowance_nanos"]) for r in ledger if r["type"] == "trial_expired"] == [("trial_expired",
                                                                                                   -left)]
    assert funds(gw, u["api_key"]) == (0, 0)
    status = user_get(gw, u["api_key"], "/trial/status")
    assert status["status"] == "expired" and status["active"] is False and status["credits_remaining"] == 0
    assert status["days_remaining"] == 0 and status["daily_cap"] is None
    # Purchased credits are spent on paid models after the trial.
    assert httpx.post(gw.url + "/credits/add", headers=admin(), json={"user_id": u["id"], "amount": "1"}
                      ).status_code == 200
    assert post_chat(gw, u["api_key"], chat_body("paid now")).status_code == 200
    assert_pools_balance(gw, u["id"])


def test_trial_daily_cap_is_enforced_and_resets_at_utc_midnight(gateway_factory: GatewayFactory,
                                                                emu_a: Emulator) -> None:
    hold = echo_hold(encode(chat_body("go")))
    cost = echo_cost(emu_prompt_tokens("go"), 1000)   # 1,000 words: nearly the whole hold
    cap = 2 * hold + hold // 2
    gw = gateway_factory([emu_a], models=models([emu_a]), trials={"daily_cap_usd": usd(cap)})
    emu_a.set_default_fault(Fault(content=" ".join(["w"] * 1000)))
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    set_clock(gw, noon)
    u = new_user(gw)
    assert [post_chat(gw, u["api_key"], chat_body("go")).status_code for _ in range(2)] == [200, 200]
    served = len(emu_a.requests)
    r = post_chat(gw, u["api_key"], chat_body("go"))   # 2 x cost + a hold would pass the cap
    assert r.status_code == 402, r.text
    assert len(emu_a.requests) == served
    err = r.json()["error"]
    assert err["code"] == "daily_cap_exceeded" and err["type"] == "insufficient_quota" and err["scope"] == "user"
    assert err["daily_cap"] == pytest.approx(cap / 1e9) and err["spent_today"] == pytest.approx(2 * cost / 1e9)
    assert err["required"] == pytest.approx(hold / 1e9)
    assert err["resets_at"] == (noon + timedelta(hours=12)).isoformat()
    assert r.headers["retry-after"] == str(12 * 3600)
    status = user_get(gw, u["api_key"], "/trial/status")
    assert status["spent_today_nanos"] == 2 * cost and status["daily_cap"] == pytest.approx(cap / 1e9)
    # The next UTC day starts from zero.
    set_clock(gw, noon + timedelta(days=1))
    assert post_chat(gw, u["api_key"], chat_body("go")).status_code == 200
    assert user_get(gw, u["api_key"], "/trial/status")["spent_today_nanos"] == cost
    assert_pools_balance(gw, u["id"])


def test_partner_trial_by_code_once_per_user(gw: GatewayServer) -> None:
    r = httpx.get(gw.url + "/trial/partner/redbeard")
    assert r.status_code == 200
    assert r.json() == {"code": "redbeard", "valid": True, "credits_usd": 100.0, "days": 30, "daily_cap_usd": 20.0,
                        "rpm": 2}
    r = httpx.get(gw.url + "/trial/partner/NOPE")
    assert r.status_code == 200 and r.json() == {"code": "NOPE", "valid": False}
    u = new_user(gw, trial=False)
    r = httpx.post(gw.url + "/trial/partner", headers=auth(u), json={"code": "nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "partner_code_not_found"
    r = httpx.post(gw.url + "/trial/partner", headers=auth(u), json={"code": "RedBeard"})
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["source"] == "partner:REDBEARD" and status["active"] is True
    assert status["credits_remaining_nanos"] == 100 * USD and status["daily_cap"] == 20.0
    assert status["days_remaining"] == 30
    again = httpx.post(gw.url + "/trial/partner", headers=auth(u), json={"code": "REDBEARD"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "trial_already_used"
    # The partner's rpm applies to the user while the trial runs.
    assert [post_chat(gw, u["api_key"], chat_body(t)).status_code for t in ("a", "b", "c")] == [200, 200, 429]
    assert_pools_balance(gw, u["id"])


def test_partner_trial_replaces_a_running_standard_trial(gw: GatewayServer) -> None:
    u = new_user(gw)
    assert post_chat(gw, u["api_key"], chat_body("hello")).status_code == 200
    left = funds(gw, u["api_key"])[1]
    r = httpx.post(gw.url + "/trial/partner", headers=auth(u), json={"code": "REDBEARD"})
    assert r.status_code == 200, r.text
    assert funds(gw, u["api_key"]) == (0, 100 * USD)
    ledger = assert_pools_balance(gw, u["id"])
    assert [(r["type"], r["allowance_nanos"]) for r in ledger if r["type"].startswith("trial")] == [
        ("trial", 5 * USD), ("trial_expired", -left), ("trial", 100 * USD)]
    # The standard trial is not given again.
    r = httpx.get(gw.url + "/trial/status", headers=auth(u))
    assert r.json()["source"] == "partner:REDBEARD"


def test_trials_are_for_accounts_without_a_paid_plan(gw: GatewayServer) -> None:
    payer = new_user(gw, trial=False, credits="1")
    assign(gw, payer["id"], "starter")
    r = httpx.post(gw.url + "/trial/partner", headers=auth(payer), json={"code": "REDBEARD"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "trial_not_available"
    # Subscribing ends a running trial: its credit expires, the plan's allowance starts.
    u = new_user(gw)
    assign(gw, u["id"], "pro")
    status = user_get(gw, u["api_key"], "/trial/status")
    assert status["status"] == "expired" and status["credits_remaining"] == 0
    assert funds(gw, u["api_key"]) == (0, 50 * USD)
    ledger = assert_pools_balance(gw, u["id"])
    assert [(r["type"], r["allowance_nanos"]) for r in ledger] == [
        ("trial", 5 * USD), ("trial_expired", -5 * USD), ("subscription_allowance", 50 * USD)]
    assert post_chat(gw, u["api_key"], chat_body("hello")).status_code == 200
