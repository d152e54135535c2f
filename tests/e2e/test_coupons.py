"""Coupons end to end: admin management, redemption into the ledger, the refusals (AC-CC.2.1-6), and
redemption races on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gatewayz.storage.schema import coupon_redemptions, coupons
from tests.conftest import GatewayFactory
from tests.e2e.test_credits import (
    admin,
    assert_books_balance,
    chat_body,
    echo_cost,
    emu_prompt_tokens,
    ledger,
    post_chat,
    select_rows,
    words,
)
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer

USD = 1_000_000_000


def as_user(u: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {u['api_key']}"}


def new_coupon(gw: GatewayServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(gw.url + "/admin/coupons", headers=admin(), json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def redeem(gw: GatewayServer, u: dict[str, Any], code: str) -> httpx.Response:
    return httpx.post(gw.url + "/coupons/redeem", headers=as_user(u), json={"code": code}, timeout=30)


def validate(gw: GatewayServer, u: dict[str, Any], code: str) -> dict[str, Any]:
    r = httpx.post(gw.url + "/coupons/validate", headers=as_user(u), json={"code": code})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def refusal(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == "code" and err["message"], err


def available_codes(gw: GatewayServer, u: dict[str, Any]) -> dict[str, dict[str, Any]]:
    r = httpx.get(gw.url + "/coupons/available", headers=as_user(u))
    assert r.status_code == 200, r.text
    return {c["code"]: c for c in r.json()["data"]}


def coupon_row(gw: GatewayServer, code: str) -> dict[str, Any]:
    return select_rows(gw, sa.select(coupons).where(coupons.c.code == code))[0]


AUTHORITIES = [pytest.param({}, id="memory"), pytest.param({"authority": "sql"}, id="sql")]


@pytest.mark.parametrize("credits", AUTHORITIES)
def test_redeem_credits_exact_amount_spendable_at_once_and_only_once(
        gateway_factory: GatewayFactory, emu_a: Emulator, credits: dict[str, str]) -> None:
    """AC-CC.2.1, AC-CC.2.3, AC-CC.2.6: the credit is exact, in the ledger as `coupon`, seen at once by the
    credit authority (in memory or SQL), refused the second time, and in the history."""
    gw = gateway_factory([emu_a], credits=credits)
    u = gw.create_user("0.001")
    # Spend first, so the in-memory authority holds this user's account when the coupon lands.
    assert post_chat(gw, u["api_key"], chat_body("hi", max_tokens=5)).status_code == 200
    spent = echo_cost(emu_prompt_tokens("hi"), words("Echo: hi"))
    assert post_chat(gw, u["api_key"], chat_body("x", model="test/pricey", max_tokens=10)).status_code == 402

    new_coupon(gw, code="welcome-5", amount="5.000000001", description="Welcome")
    r = redeem(gw, u, " Welcome-5 ")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == "WELCOME-5" and body["amount_nanos"] == 5 * USD + 1 and body["currency"] == "USD"
    expected = 1_000_000 - spent + 5 * USD + 1
    assert body["balance_nanos"] == expected
    assert gw.balance_nanos(u["api_key"]) == expected
    # The credit is spendable at once: the pricey request that was refused now passes.
    r = post_chat(gw, u["api_key"], chat_body("x", model="test/pricey", max_tokens=10))
    assert r.status_code == 200, r.text

    refusal(redeem(gw, u, "WELCOME-5"), 400, "coupon_already_redeemed")
    assert validate(gw, u, "welcome-5")["reason"] == "already_redeemed"

    rows = assert_books_balance(gw, u["id"])
    coupon_rows = [x for x in rows if x["type"] == "coupon"]
    assert len(coupon_rows) == 1
    assert coupon_rows[0]["amount_nanos"] == 5 * USD + 1 and "WELCOME-5" in coupon_rows[0]["description"]
    r = httpx.get(gw.url + "/credits/transactions", headers=as_user(u))
    assert [t["type"] for t in r.json()["data"]].count("coupon") == 1

    hist = httpx.get(gw.url + "/coupons/history", headers=as_user(u)).json()
    assert hist["total"] == 1
    assert hist["data"][0]["code"] == "WELCOME-5" and hist["data"][0]["amount_nanos"] == 5 * USD + 1
    assert hist["data"][0]["description"] == "Welcome" and hist["data"][0]["redeemed_at"]
    other = gw.create_user("0")
    assert httpx.get(gw.url + "/coupons/history", headers=as_user(other)).json() == {
        "data": [], "total": 0, "limit": 50, "offset": 0}
    assert coupon_row(gw, "WELCOME-5")["redemptions"] == 1


def test_expired_coupon_is_refused(gateway: GatewayServer) -> None:
    """AC-CC.2.2: valid until its expiry, then 400 coupon_expired, and no longer listed."""
    u = gateway.create_user("1")
    expiry = datetime.now(UTC) + timedelta(seconds=1.5)
    new_coupon(gateway, code="SOON", amount="1", expires_at=expiry.isoformat())
    assert validate(gateway, u, "soon")["valid"] is True
    assert "SOON" in available_codes(gateway, u)
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.3)
    v = validate(gateway, u, "soon")
    assert v["valid"] is False and v["reason"] == "expired" and "expired" in v["message"]
    refusal(redeem(gateway, u, "SOON"), 400, "coupon_expired")
    assert "SOON" not in available_codes(gateway, u)
    assert gateway.balance_nanos(u["api_key"]) == USD
    assert [x["type"] for x in assert_books_balance(gateway, u["id"])] == ["admin_credit"]


def test_user_specific_coupon(gateway: GatewayServer) -> None:
    """AC-CC.2.4: only its user may redeem (another gets 403) or even see it."""
    alice, bob = gateway.create_user("0"), gateway.create_user("0")
    new_coupon(gateway, code="ALICE-ONLY", amount="2", user_id=alice["id"])
    assert "ALICE-ONLY" not in available_codes(gateway, bob)
    assert available_codes(gateway, alice)["ALICE-ONLY"]["for_you"] is True
    assert validate(gateway, bob, "alice-only")["reason"] == "not_for_you"
    refusal(redeem(gateway, bob, "ALICE-ONLY"), 403, "coupon_not_for_you")
    assert gateway.balance_nanos(bob["api_key"]) == 0
    assert redeem(gateway, alice, "ALICE-ONLY").status_code == 200
    assert gateway.balance_nanos(alice["api_key"]) == 2 * USD
    assert ledger(gateway, bob["id"]) == []
    assert_books_balance(gateway, alice["id"])


def test_available_lists_what_the_caller_can_redeem_now(gateway: GatewayServer) -> None:
    """AC-CC.2.5: listed global coupons and the caller's own, never another user's, nor used-up ones."""
    me, other = gateway.create_user("0"), gateway.create_user("0")
    new_coupon(gateway, code="GLOBAL", amount="1", description="for all")
    new_coupon(gateway, code="TWICE", amount="1", per_user_limit=2)
    new_coupon(gateway, code="SECRET", amount="1", listed=False)
    new_coupon(gateway, code="MINE", amount="3", user_id=me["id"], listed=False)
    new_coupon(gateway, code="THEIRS", amount="3", user_id=other["id"])
    new_coupon(gateway, code="ONE-SHOT", amount="1", max_redemptions=1)
    new_coupon(gateway, code="GONE", amount="1")
    assert httpx.delete(gateway.url + "/admin/coupons/gone", headers=admin()).status_code == 200
    assert redeem(gateway, other, "ONE-SHOT").status_code == 200

    listed = available_codes(gateway, me)
    assert set(listed) == {"GLOBAL", "TWICE", "MINE"}
    assert listed["GLOBAL"] == {"code": "GLOBAL", "amount": 1.0, "amount_nanos": USD, "description": "for all",
                                "expires_at": None, "for_you": False, "remaining_for_you": 1}
    assert listed["MINE"]["for_you"] is True and listed["TWICE"]["remaining_for_you"] == 2
    # An unlisted code is still redeemable by whoever has it.
    assert validate(gateway, me, "SECRET")["valid"] is True
    for code in ("GLOBAL", "TWICE", "SECRET"):
        assert redeem(gateway, me, code).status_code == 200
    listed = available_codes(gateway, me)
    assert set(listed) == {"TWICE", "MINE"} and listed["TWICE"]["remaining_for_you"] == 1
    assert gateway.balance_nanos(me["api_key"]) == 3 * USD
    assert_books_balance(gateway, me["id"])


def test_validate_says_why_not(gateway: GatewayServer) -> None:
    u, v = gateway.create_user("0"), gateway.create_user("0")
    new_coupon(gateway, code="CAP-1", amount="0.5", max_redemptions=1, description="d")
    ok = validate(gateway, u, "cap-1")
    assert ok == {"code": "CAP-1", "valid": True, "reason": None, "amount": 0.5, "amount_nanos": USD // 2,
                  "description": "d", "expires_at": None, "remaining_for_you": 1}
    assert validate(gateway, u, "NO-SUCH")["reason"] == "not_found"
    assert redeem(gateway, v, "CAP-1").status_code == 200
    assert validate(gateway, u, "CAP-1")["reason"] == "exhausted"
    assert validate(gateway, v, "CAP-1")["reason"] == "already_redeemed"
    refusal(redeem(gateway, u, "CAP-1"), 400, "coupon_exhausted")
    refusal(redeem(gateway, u, "NO-SUCH"), 404, "coupon_not_found")
    # Malformed codes are a 400 validation error, not a lookup.
    for bad in ("ab", "x" * 41, "has space", "semi;colon", ""):
        r = httpx.post(gateway.url + "/coupons/redeem", headers=as_user(u), json={"code": bad})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", bad
    assert gateway.balance_nanos(u["api_key"]) == 0
    assert ledger(gateway, u["id"]) == []


def test_admin_management(gateway: GatewayServer, user: dict[str, Any]) -> None:
    url = gateway.url + "/admin/coupons"
    created = new_coupon(gateway, code="spring_25", amount="25", max_redemptions=100, per_user_limit=2,
                         description="Spring")
    assert created["code"] == "SPRING_25" and created["amount_nanos"] == 25 * USD
    assert created["redemptions"] == 0 and created["is_active"] is True and created["listed"] is True
    r = httpx.post(url, headers=admin(), json={"code": "Spring_25", "amount": "1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "coupon_exists"
    bad_bodies = [{"code": "OK-CODE", "amount": "0"}, {"code": "OK-CODE", "amount": "-1"},
                  {"code": "OK-CODE", "amount": "0.0000000001"}, {"code": "ab", "amount": "1"},
                  {"code": "bad code", "amount": "1"}, {"code": "OK-CODE", "amount": "1", "per_user_limit": 0},
                  {"code": "OK-CODE", "amount": "1", "max_redemptions": 0},
                  {"code": "OK-CODE", "amount": "1", "expires_at": "2001-01-01T00:00:00Z"},
                  {"code": "OK-CODE", "amount": "1", "unknown": 1}]
    for body in bad_bodies:
        r = httpx.post(url, headers=admin(), json=body)
        assert r.status_code == 400, (body, r.text)
    # Above coupons.max_amount_usd (1000 by default).
    r = httpx.post(url, headers=admin(), json={"code": "HUGE", "amount": "1000.01"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount"
    r = httpx.post(url, headers=admin(), json={"code": "NOBODY", "amount": "1", "user_id": 987654})
    assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
    assert httpx.post(url, headers=as_user(user), json={"code": "MINE", "amount": "1"}).status_code == 403

    assert redeem(gateway, user, "SPRING_25").status_code == 200
    listing = httpx.get(url, headers=admin()).json()
    assert listing["total"] == 1 and listing["data"][0]["redemptions"] == 1
    r = httpx.delete(url + "/spring_25", headers=admin())
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert httpx.get(url, params={"active": "true"}, headers=admin()).json()["total"] == 0
    assert httpx.get(url, params={"active": "false"}, headers=admin()).json()["total"] == 1
    refusal(redeem(gateway, user, "SPRING_25"), 400, "coupon_inactive")
    assert httpx.delete(url + "/NO-SUCH", headers=admin()).status_code == 404
    # Past redemptions stay.
    assert httpx.get(gateway.url + "/coupons/history", headers=as_user(user)).json()["total"] == 1
    assert gateway.balance_nanos(user["api_key"]) == 35 * USD
    assert_books_balance(gateway, user["id"])
    actions = [e["action"] for e in httpx.get(gateway.url + "/admin/audit", headers=admin()).json()["data"]]
    assert {"coupon.create", "coupon.redeem", "coupon.deactivate"} <= set(actions)


def test_coupon_attempts_are_rate_limited(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], coupons={"attempts_per_minute": 3})
    u, v = gw.create_user("0"), gw.create_user("0")
    for code in ("GUESS1", "GUESS2", "GUESS3"):
        assert validate(gw, u, code)["reason"] == "not_found"
    r = redeem(gw, u, "GUESS4")
    assert r.status_code == 429 and r.json()["error"]["code"] == "coupon_attempts"
    assert int(r.headers["retry-after"]) >= 1
    assert validate(gw, v, "GUESS1")["valid"] is False   # per user


# ------------------------------------------------------------------------------------------------- races


async def _redeem_all(gw: GatewayServer, pairs: list[tuple[dict[str, Any], str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
        return list(await asyncio.gather(*(client.post("/coupons/redeem", headers=as_user(u), json={"code": code})
                                           for u, code in pairs)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_redeems_of_a_one_use_coupon_succeed_once(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                             backend: str) -> None:
    gw = gateway_factory([emu_a], backend=backend)
    users = [gw.create_user("0") for _ in range(12)]
    new_coupon(gw, code="FIRST-COME", amount="7", max_redemptions=1)
    results = asyncio.run(_redeem_all(gw, [(u, "FIRST-COME") for u in users]))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 11, [r.text for r in results]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 400} == {"coupon_exhausted"}
    assert coupon_row(gw, "FIRST-COME")["redemptions"] == 1
    assert len(select_rows(gw, sa.select(coupon_redemptions))) == 1
    winners = [u for u, r in zip(users, results, strict=True) if r.status_code == 200]
    for u in users:
        rows = assert_books_balance(gw, u["id"])
        assert gw.balance_nanos(u["api_key"]) == (7 * USD if u in winners else 0)
        assert len(rows) == (1 if u in winners else 0)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_per_user_limit_holds_under_concurrency(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                backend: str) -> None:
    gw = gateway_factory([emu_a], backend=backend)
    u, v = gw.create_user("0"), gw.create_user("0")
    new_coupon(gw, code="TWO-EACH", amount="1.5", per_user_limit=2, max_redemptions=3)
    results = asyncio.run(_redeem_all(gw, [(u, "TWO-EACH")] * 10))
    assert sorted(r.status_code for r in results) == [200, 200] + [400] * 8, [r.text for r in results]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 400} == {"coupon_already_redeemed"}
    # The global cap (3) still leaves one for another user, and only one.
    results = asyncio.run(_redeem_all(gw, [(v, "TWO-EACH")] * 6))
    assert sorted(r.status_code for r in results) == [200] + [400] * 5, [r.text for r in results]
    assert coupon_row(gw, "TWO-EACH")["redemptions"] == 3
    seqs = sorted((r["user_id"], r["seq"]) for r in select_rows(gw, sa.select(coupon_redemptions)))
    assert seqs == [(u["id"], 1), (u["id"], 2), (v["id"], 1)]
    assert gw.balance_nanos(u["api_key"]) == 3 * USD and gw.balance_nanos(v["api_key"]) == USD + USD // 2
    for who in (u, v):
        assert_books_balance(gw, who["id"])
