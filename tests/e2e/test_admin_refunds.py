"""Admin credit adjustments and refunds over real HTTP: signed corrections never below zero, refunds of a real
request capped at its cost and paid once (also under concurrency, on SQLite and PostgreSQL), the per-change and
per-admin 24-hour caps (also on POST /credits/add), the books balanced and every change audited."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from gatewayz.settings import BillingConfig
from tests.conftest import GatewayFactory
from tests.e2e.test_credits import admin, assert_books_balance, usd
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer

NANO = 1_000_000_000


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(gw: GatewayServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gw.url + path, headers=headers or admin(), json=body, timeout=30)


def error_of(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code, err
    assert err["message"] and err["type"]
    return err


def audit_rows(gw: GatewayServer, action: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{gw.url}/admin/audit?action={action}&limit=1000", headers=admin())
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def charged_request(gw: GatewayServer, api_key: str) -> tuple[str, int]:
    """One real chat completion through the openai SDK; (its request id, what it cost)."""
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=api_key, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="test/echo", messages=[{"role": "user", "content": "refund me please"}])
    assert raw.parse().choices[0].message.content
    request_id = raw.headers["x-request-id"]
    gw.drain()
    r = httpx.get(gw.url + "/v1/generation", params={"id": request_id}, headers=bearer(api_key))
    assert r.status_code == 200, r.text
    cost = int(r.json()["data"]["cost_nanos"])
    assert cost > 0
    return request_id, cost


def staff_admin(gw: GatewayServer) -> dict[str, Any]:
    """A user (no opening credits) given the admin role by the admin key."""
    r = post(gw, "/admin/users", {"email": f"staff-{uuid.uuid4().hex[:8]}@example.com"})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    r = httpx.put(f"{gw.url}/admin/users/{made['id']}/role", headers=admin(),
                  json={"role": "admin", "reason": "runs billing"})
    assert r.status_code == 200, r.text
    return made


def test_adjust_up_and_down_never_below_zero(gateway: GatewayServer, user: dict[str, Any]) -> None:
    uid = user["id"]
    r = post(gateway, "/credits/adjust", {"user_id": uid, "amount": "2.5", "reason": "missed top-up"})
    assert r.status_code == 200, r.text
    assert r.json()["balance"] == pytest.approx(12.5) and r.json()["type"] == "admin_adjustment"
    r = post(gateway, "/credits/adjust", {"user_id": uid, "amount": "-3.000000001", "reason": "double grant"})
    assert r.status_code == 200, r.text
    assert gateway.balance_nanos(user["api_key"]) == 9_499_999_999
    # A debit larger than the balance is refused with the balance, and changes nothing.
    err = error_of(post(gateway, "/credits/adjust", {"user_id": uid, "amount": "-9.5", "reason": "x"}),
                   409, "balance_below_zero")
    assert err["balance"] == pytest.approx(9.499999999) and "9.499999999" in err["message"]
    for bad in ({"user_id": uid, "amount": "1"}, {"user_id": uid, "amount": "1", "reason": ""},
                {"user_id": uid, "amount": "0", "reason": "nothing"},
                {"user_id": uid, "amount": "0.0000000001", "reason": "too fine"}):
        assert post(gateway, "/credits/adjust", bad).status_code == 400, bad
    error_of(post(gateway, "/credits/adjust", {"user_id": 987654, "amount": "1", "reason": "x"}), 404, "user_not_found")
    user_try = post(gateway, "/credits/adjust", {"user_id": uid, "amount": "5", "reason": "me"},
                    bearer(user["api_key"]))
    assert user_try.status_code == 403
    assert gateway.balance_nanos(user["api_key"]) == 9_499_999_999
    rows = assert_books_balance(gateway, uid)
    adjustments = [(r["amount_nanos"], r["description"], r["actor"]) for r in rows if r["type"] == "admin_adjustment"]
    assert adjustments == [(2_500_000_000, "missed top-up", "admin"), (-3_000_000_001, "double grant", "admin")]
    audited = audit_rows(gateway, "credits.adjust")
    assert sorted(a["details"]["nanos"] for a in audited) == [-3_000_000_001, 2_500_000_000]
    assert {a["target"] for a in audited} == {f"user:{uid}"} and {a["actor"] for a in audited} == {"admin"}


def test_refund_of_a_request_is_capped_at_its_cost_and_paid_once(gateway: GatewayServer,
                                                                    user: dict[str, Any]) -> None:
    uid, key = user["id"], user["api_key"]
    request_id, cost = charged_request(gateway, key)
    before = gateway.balance_nanos(key)
    assert before == 10 * NANO - cost
    err = error_of(post(gateway, "/refund", {"user_id": uid, "amount": usd(cost + 1), "reason": "bad answer",
                                             "request_id": request_id}), 409, "refund_exceeds_cost")
    assert err["cost"] == pytest.approx(cost / NANO)
    half = cost // 2
    r = post(gateway, "/refund", {"user_id": uid, "amount": usd(half), "reason": "bad answer",
                                  "request_id": request_id})
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "refund" and r.json()["request_id"] == request_id
    assert gateway.balance_nanos(key) == before + half
    # Refunded once: a second refund of the same request is refused, even within its cost.
    for amount in (usd(cost - half), usd(cost)):
        error_of(post(gateway, "/refund", {"user_id": uid, "amount": amount, "reason": "again",
                                           "request_id": request_id}), 409, "already_refunded")
    error_of(post(gateway, "/refund", {"user_id": uid, "amount": "0.01", "reason": "x", "request_id": "nope"}),
             404, "generation_not_found")
    other = gateway.create_user("0")   # another user's request id is not this user's
    error_of(post(gateway, "/refund", {"user_id": other["id"], "amount": usd(1), "reason": "x",
                                       "request_id": request_id}), 404, "generation_not_found")
    assert post(gateway, "/refund", {"user_id": uid, "amount": "0.5"}).status_code == 400   # reason required
    # A refund without a request: a goodwill credit.
    r = post(gateway, "/refund", {"user_id": uid, "amount": "0.5", "reason": "outage"})
    assert r.status_code == 200, r.text
    assert gateway.balance_nanos(key) == before + half + NANO // 2
    rows = assert_books_balance(gateway, uid)
    assert [(r["amount_nanos"], r["request_id"]) for r in rows if r["type"] == "refund"] == [
        (half, request_id), (NANO // 2, None)]
    audited = audit_rows(gateway, "credits.refund")
    assert sorted((a["details"]["nanos"], a["details"]["request_id"]) for a in audited) == sorted(
        [(half, request_id), (NANO // 2, None)])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_refunds_of_one_request_pay_at_most_its_cost(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                                backend: str) -> None:
    gw = gateway_factory([emu_a], backend=backend)
    u = gw.create_user("1")
    request_id, cost = charged_request(gw, u["api_key"])
    body = {"user_id": u["id"], "amount": usd(cost), "reason": "race", "request_id": request_id}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(gw, "/refund", body), range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7, [a.text for a in answers]
    rows = assert_books_balance(gw, u["id"])
    assert sum(r["amount_nanos"] for r in rows if r["type"] == "refund") == cost
    assert gw.balance_nanos(u["api_key"]) == NANO


def test_per_transaction_cap_on_add_adjust_and_refund(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], billing=BillingConfig(admin_max_transaction_usd=Decimal("5"),
                                                        admin_daily_limit_usd=Decimal("100")))
    u = gw.create_user("0")
    for path, body in (("/credits/add", {"amount": "5.000000001"}),
                       ("/credits/adjust", {"amount": "6", "reason": "x"}),
                       ("/credits/adjust", {"amount": "-6", "reason": "x"}),
                       ("/refund", {"amount": "6", "reason": "x"})):
        err = error_of(post(gw, path, {"user_id": u["id"], **body}), 403, "admin_transaction_limit")
        assert "$5" in err["message"] and err["limit"] == 5
    assert post(gw, "/credits/add", {"user_id": u["id"], "amount": "5"}).status_code == 200
    assert post(gw, "/credits/adjust", {"user_id": u["id"], "amount": "-5", "reason": "undo"}).status_code == 200
    rows = assert_books_balance(gw, u["id"])
    assert [r["amount_nanos"] for r in rows] == [5 * NANO, -5 * NANO]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_daily_cap_per_admin(gateway_factory: GatewayFactory, emu_a: Emulator, backend: str) -> None:
    gw = gateway_factory([emu_a], backend=backend,
                         billing=BillingConfig(admin_max_transaction_usd=Decimal("5"),
                                               admin_daily_limit_usd=Decimal("12")))
    u = gw.create_user("0")
    uid = u["id"]
    assert post(gw, "/credits/add", {"user_id": uid, "amount": "5"}).status_code == 200
    # A debit counts by its size too: 5 + 4 moved.
    assert post(gw, "/credits/adjust", {"user_id": uid, "amount": "-4", "reason": "fix"}).status_code == 200
    err = error_of(post(gw, "/refund", {"user_id": uid, "amount": "3.5", "reason": "x"}), 403, "admin_daily_limit")
    assert err["limit"] == 12 and err["remaining"] == 3 and "$3 remains" in err["message"]
    assert post(gw, "/refund", {"user_id": uid, "amount": "3", "reason": "x"}).status_code == 200
    error_of(post(gw, "/credits/add", {"user_id": uid, "amount": "0.000000001"}), 403, "admin_daily_limit")
    # Another admin has a limit of its own; concurrent grants by it never pass the limit together.
    staff = staff_admin(gw)
    body = {"user_id": uid, "amount": "5"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post(gw, "/credits/add", body, bearer(staff["api_key"])), range(6)))
    assert sorted(a.status_code for a in answers) == [200, 200, 403, 403, 403, 403], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 403)
    assert refused.json()["error"]["remaining"] == 2
    rows = assert_books_balance(gw, uid)
    assert sum(abs(r["amount_nanos"]) for r in rows if r["actor"] == "admin") == 12 * NANO
    assert sum(r["amount_nanos"] for r in rows if r["actor"] == f"user:{staff['id']}") == 10 * NANO
    assert gw.balance_nanos(u["api_key"]) == 14 * NANO
    assert {a["actor"] for a in audit_rows(gw, "credits.add")} == {"admin", f"user:{staff['id']}"}


def test_a_bonus_grant_is_its_own_ledger_type_and_counts_toward_the_caps(gateway_factory: GatewayFactory,
                                                                         emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], billing=BillingConfig(admin_max_transaction_usd=Decimal("50"),
                                                        admin_daily_limit_usd=Decimal("60")))
    target = gw.create_user("0")
    r = post(gw, "/credits/add", {"user_id": target["id"], "amount": "40", "type": "bonus"})
    assert r.status_code == 200, r.text
    ledger = httpx.get(gw.url + "/credits/transactions", headers=bearer(target["api_key"])).json()["data"]
    assert [row["type"] for row in ledger if row["amount_nanos"] == 40 * NANO] == ["bonus"]
    error_of(post(gw, "/credits/add", {"user_id": target["id"], "amount": "30", "type": "bonus"}), 403,
             "admin_daily_limit")   # 40 + 30 > 60 in 24 h
    assert gw.balance_nanos(target["api_key"]) == 40 * NANO
