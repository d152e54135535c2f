"""Plans end to end: GET /plans, assigning a plan (audited), the monthly allowance spent before purchased
credits (exact under concurrency on both credit authorities, SQLite and PostgreSQL), no rollover at the
month boundary, purchased credits surviving plan changes, the plan's per-user rate limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.e2e.plan_helpers import assert_pools_balance, assign, funds, models, set_clock, user_get
from tests.e2e.test_credits import (
    admin,
    chat_body,
    echo_cost,
    echo_hold,
    emu_prompt_tokens,
    encode,
    post_chat,
    sdk,
    usage_for,
    usd,
    words,
)
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer

HELLO = echo_cost(emu_prompt_tokens("hello"), words("Echo: hello"))   # 11,000 nanodollars
MINI = 20_000   # the allowance of the "mini" plan below: one "hello" and most of a second
PLANS = [
    {"id": "free", "name": "Free", "price_usd_month": 0},
    {"id": "mini", "name": "Mini", "price_usd_month": 1, "monthly_allowance_usd": usd(MINI)},
    {"id": "half", "name": "Half", "price_usd_month": 5, "monthly_allowance_usd": "0.5"},
    {"id": "limited", "name": "Limited", "price_usd_month": 2, "rpm": 2, "tpm": 200},
]
AUTHORITIES = [pytest.param({}, id="memory"), pytest.param({"authority": "sql"}, id="sql")]


@pytest.fixture(params=AUTHORITIES)
def gw(request: pytest.FixtureRequest, gateway_factory: GatewayFactory, emu_a: Emulator,
       emu_b: Emulator) -> GatewayServer:
    return gateway_factory([emu_a, emu_b], credits=dict(request.param), models=models([emu_a, emu_b]),
                           plans=PLANS)


def test_plans_are_public_with_the_builtin_defaults(gateway: GatewayServer) -> None:
    r = httpx.get(gateway.url + "/plans")
    assert r.status_code == 200
    body = r.json()
    by_id = {p["id"]: p for p in body["data"]}
    assert list(by_id) == ["free", "starter", "pro", "enterprise"]
    assert by_id["free"] == {"id": "free", "name": "Free", "price_usd_month": 0.0, "monthly_allowance_usd": 0.0,
                             "rpm": None, "tpm": None, "daily_cap_usd": None}
    assert by_id["starter"]["price_usd_month"] == 10.0 and by_id["starter"]["monthly_allowance_usd"] == 10.0
    assert by_id["starter"]["daily_cap_usd"] == 25.0 and by_id["starter"]["rpm"] == 600
    assert by_id["pro"]["monthly_allowance_usd"] == 50.0 and by_id["pro"]["daily_cap_usd"] == 200.0
    assert by_id["enterprise"]["price_usd_month"] is None
    assert body["trial"] == {"credits_usd": 5.0, "days": 14, "daily_cap_usd": 1.0, "rpm": None}


def test_allowance_is_spent_before_purchased_credits(gw: GatewayServer) -> None:
    u = gw.create_user("1")
    assert funds(gw, u["api_key"]) == (10**9, 0)
    assigned = assign(gw, u["id"], "mini")
    assert assigned["plan"]["id"] == "mini" and assigned["previous_plan"] == "free"
    assert assigned["allowance"] == pytest.approx(MINI / 1e9) and assigned["balance"] == 1.0
    client = sdk(gw, u["api_key"])
    for _ in range(3):
        client.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "hello"}])
    # 11,000 from the allowance; then its last 9,000 and 2,000 purchased; then 11,000 purchased.
    assert funds(gw, u["api_key"]) == (10**9 - (3 * HELLO - MINI), 0)
    ledger = assert_pools_balance(gw, u["id"])
    usage = [(r["allowance_nanos"], r["amount_nanos"]) for r in ledger if r["type"] == "api_usage"]
    assert usage == [(-HELLO, 0), (-(MINI - HELLO), -(2 * HELLO - MINI)), (0, -HELLO)]
    grants = [r for r in ledger if r["type"] == "subscription_allowance"]
    assert [(g["allowance_nanos"], g["amount_nanos"]) for g in grants] == [(MINI, 0)]
    # The usage records keep the whole cost; the user's own ledger view shows both parts.
    assert [rec["cost_nanos"] for rec in usage_for(gw, u["id"])] == [HELLO] * 3
    view = user_get(gw, u["api_key"], "/credits/transactions")["data"]
    newest = view[0]
    assert newest["type"] == "api_usage" and newest["amount_nanos"] == -HELLO
    assert newest["allowance_amount_nanos"] == 0 and newest["allowance_after"] == 0
    plan = user_get(gw, u["api_key"], "/user/plan")
    assert plan["plan"]["id"] == "mini" and plan["allowance_nanos"] == 0
    assert plan["balance_nanos"] == 10**9 - (3 * HELLO - MINI)
    assert plan["period"] == f"{datetime.now(UTC):%Y-%m}/mini"


CONCURRENCY = [
    pytest.param("sqlite", {}, id="sqlite-memory"),
    pytest.param("sqlite", {"authority": "sql"}, id="sqlite-sql"),
    pytest.param("postgresql", {}, id="postgresql-memory"),
    pytest.param("postgresql", {"authority": "sql"}, id="postgresql-sql"),
]


@pytest.mark.parametrize(("backend", "credits"), CONCURRENCY)
def test_concurrent_requests_spend_allowance_then_credits_exactly(gateway_factory: GatewayFactory,
                                                                  emu_a: Emulator, emu_b: Emulator, backend: str,
                                                                  credits: dict[str, str]) -> None:
    answer = " ".join(["w"] * 1000)
    hold = echo_hold(encode(chat_body("go")))
    cost = echo_cost(emu_prompt_tokens("go"), 1000)
    # Two holds of allowance and one and a half of purchased credits: exactly three requests fit.
    plans = [*PLANS, {"id": "burst", "name": "Burst", "price_usd_month": 1, "monthly_allowance_usd": usd(2 * hold)}]
    gw = gateway_factory([emu_a, emu_b], backend=backend, credits=credits, models=models([emu_a, emu_b]),
                         plans=plans)
    for emu in (emu_a, emu_b):
        emu.set_default_fault(Fault(content=answer, latency_ms=150))
    purchased = hold + hold // 2
    u = gw.create_user(usd(purchased))
    assign(gw, u["id"], "burst")
    statuses: list[int] = []
    codes: list[Any] = []

    async def burst() -> None:
        client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=u["api_key"], max_retries=0, timeout=30)

        async def one() -> None:
            try:
                await client.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "go"}])
                statuses.append(200)
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)
                codes.append(exc.body.get("code") if isinstance(exc.body, dict) else None)

        try:
            await asyncio.gather(*(one() for _ in range(40)))
        finally:
            await client.close()

    asyncio.run(burst())
    assert statuses.count(200) == 3, statuses
    assert set(statuses) == {200, 402} and set(codes) == {"insufficient_credits"}
    spent = 3 * cost
    assert spent > 2 * hold   # the allowance is gone, the rest came from purchased credits
    assert funds(gw, u["api_key"]) == (purchased - (spent - 2 * hold), 0)
    ledger = assert_pools_balance(gw, u["id"])
    assert -sum(r["allowance_nanos"] for r in ledger if r["type"] == "api_usage") == 2 * hold
    assert -sum(r["amount_nanos"] for r in ledger if r["type"] == "api_usage") == spent - 2 * hold


def test_unused_allowance_does_not_roll_over(gw: GatewayServer) -> None:
    u = gw.create_user("1")
    assign(gw, u["id"], "mini")
    assert post_chat(gw, u["api_key"], chat_body("hello")).status_code == 200
    assert funds(gw, u["api_key"]) == (10**9, MINI - HELLO)
    # A month later: the first request resets the allowance (the 9,000 left expire) and spends the new one.
    now = datetime.now(UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 2, 12, tzinfo=UTC)
    set_clock(gw, next_month)
    assert post_chat(gw, u["api_key"], chat_body("hello")).status_code == 200
    assert funds(gw, u["api_key"]) == (10**9, MINI - HELLO)
    ledger = assert_pools_balance(gw, u["id"])
    kinds = [(r["type"], r["allowance_nanos"]) for r in ledger if r["allowance_nanos"]]
    assert kinds == [("subscription_allowance", MINI), ("api_usage", -HELLO), ("allowance_expired", -(MINI - HELLO)),
                     ("subscription_allowance", MINI), ("api_usage", -HELLO)]
    expired = next(r for r in ledger if r["type"] == "allowance_expired")
    assert expired["description"] == f"unused allowance of {now:%Y-%m}/mini"
    assert user_get(gw, u["api_key"], "/user/plan")["period"] == f"{next_month:%Y-%m}/mini"
    # Without a request in between, the balance view resets it too (once).
    set_clock(gw, next_month + timedelta(days=31))
    assert funds(gw, u["api_key"]) == (10**9, MINI)
    assert funds(gw, u["api_key"]) == (10**9, MINI)
    assert_pools_balance(gw, u["id"])


def test_plan_changes_keep_purchased_credits_and_are_audited(gw: GatewayServer) -> None:
    u = gw.create_user("3")
    assign(gw, u["id"], "half")
    assert funds(gw, u["api_key"]) == (3 * 10**9, 5 * 10**8)
    assert post_chat(gw, u["api_key"], chat_body("hello")).status_code == 200
    assert funds(gw, u["api_key"]) == (3 * 10**9, 5 * 10**8 - HELLO)
    changed = assign(gw, u["id"], "mini")   # the rest of Half's allowance expires, Mini's is granted in full
    assert changed["previous_plan"] == "half" and changed["balance"] == 3.0
    assert funds(gw, u["api_key"]) == (3 * 10**9, MINI)
    assign(gw, u["id"], "free")
    assert funds(gw, u["api_key"]) == (3 * 10**9, 0)
    assert post_chat(gw, u["api_key"], chat_body("hello")).status_code == 200
    assert funds(gw, u["api_key"]) == (3 * 10**9 - HELLO, 0)
    ledger = assert_pools_balance(gw, u["id"])
    assert [(r["type"], r["allowance_nanos"]) for r in ledger if r["type"].endswith(("expired", "allowance"))] == [
        ("subscription_allowance", 5 * 10**8), ("allowance_expired", -(5 * 10**8 - HELLO)),
        ("subscription_allowance", MINI), ("allowance_expired", -MINI)]
    r = httpx.get(gw.url + "/admin/audit", params={"action": "plan.assign"}, headers=admin())
    assert r.status_code == 200
    entries = [e for e in r.json()["data"] if e["target"] == f"user:{u['id']}"]
    assert sorted((e["details"]["previous"], e["details"]["plan"]) for e in entries) == [
        ("free", "half"), ("half", "mini"), ("mini", "free")]
    assert all(e["actor"] == "admin" for e in entries)
    assert httpx.get(gw.url + "/admin/audit/verify", headers=admin()).json()["valid"] is True


def test_assign_plan_validation(gw: GatewayServer) -> None:
    u = gw.create_user("1")
    url = gw.url + "/admin/assign-plan"
    r = httpx.post(url, headers=admin(), json={"user_id": u["id"], "plan": "platinum"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_plan"
    r = httpx.post(url, headers=admin(), json={"user_id": 987_654, "plan": "mini"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
    r = httpx.post(url, headers=admin(), json={"user_id": u["id"]})
    assert r.status_code == 400
    r = httpx.post(url, headers={"Authorization": f"Bearer {u['api_key']}"}, json={"user_id": u["id"], "plan": "mini"})
    assert r.status_code == 403
    assert user_get(gw, u["api_key"], "/user/plan")["plan"]["id"] == "free"


def test_plan_limits_apply_per_user_and_smaller_key_limits_win(gateway_factory: GatewayFactory,
                                                               emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], models=models([emu_a]), plans=PLANS)
    u = gw.create_user("1")
    assign(gw, u["id"], "limited")
    # rpm 2 for the user, whichever key: the third request is refused.
    second = httpx.post(gw.url + "/user/api-keys", headers={"Authorization": f"Bearer {u['api_key']}"},
                        json={"name": "second"}).json()["api_key"]
    assert post_chat(gw, u["api_key"], chat_body("a")).status_code == 200
    assert post_chat(gw, second, chat_body("b")).status_code == 200
    r = post_chat(gw, u["api_key"], chat_body("c"))
    assert r.status_code == 429 and r.headers["x-ratelimit-reason"] == "user_requests"
    # A key's own smaller limit wins over the plan's.
    v = gw.create_user("1")
    assign(gw, v["id"], "limited")
    r = httpx.put(gw.url + "/user/rate-limits/" + str(v["key_id"]), json={"rpm_limit": 1},
                  headers={"Authorization": f"Bearer {v['api_key']}"})
    assert r.status_code == 200
    assert post_chat(gw, v["api_key"], chat_body("a")).status_code == 200
    r = post_chat(gw, v["api_key"], chat_body("b"))
    assert r.status_code == 429 and r.headers["x-ratelimit-reason"] == "key_requests"
    # tpm 200 per user: a request that may use the whole budget passes once; real usage is counted after it.
    w = gw.create_user("1")
    assign(gw, w["id"], "limited")
    assert post_chat(gw, w["api_key"], chat_body("x", max_tokens=190)).status_code == 200
    r = post_chat(gw, w["api_key"], chat_body("y", max_tokens=190))
    assert r.status_code == 429 and r.headers["x-ratelimit-reason"] == "user_tokens"


def test_low_balance_header_counts_the_allowance(gw: GatewayServer) -> None:
    u = gw.create_user("0.25")
    assign(gw, u["id"], "half")
    raw = encode(chat_body("hello"))
    r = post_chat(gw, u["api_key"], raw)
    assert r.status_code == 200
    # Purchased $0.25 + allowance $0.50, less this request's hold: under the $1 threshold.
    expected = Decimal(750_000_000 - echo_hold(raw)) / 10**9
    assert r.headers["x-credits-remaining"] == f"{expected:.6f}"
    rich = gw.create_user("0.25")
    assign(gw, rich["id"], "mini")
    raw = encode(chat_body("hello"))
    r = post_chat(gw, rich["api_key"], raw)
    assert r.headers["x-credits-remaining"] == f"{Decimal(250_000_000 + MINI - echo_hold(raw)) / 10**9:.6f}"
