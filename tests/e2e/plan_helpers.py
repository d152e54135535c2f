"""Helpers for the plans, trials and daily caps tests: a catalog with a free model, the clock, the two pools."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import sqlalchemy as sa

from gatewayz.settings import ModelConfig, ModelRoute, Pricing
from gatewayz.storage.schema import credit_transactions, users
from tests.e2e.test_credits import admin, select_rows
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer

FREE_MODEL = "test/echo:free"


def models(emus: list[Emulator]) -> list[ModelConfig]:
    """test/echo (1,000 and 2,000 nanodollars a token), test/pricey, and a free model."""
    routes = [ModelRoute(provider=f"emu-{e.name}", model="ok-model") for e in emus]
    return [
        ModelConfig(id="test/echo", aliases=["echo"], pricing=Pricing(input=Decimal("1"), output=Decimal("2")),
                    context_length=8192, max_output_tokens=1024, providers=routes),
        ModelConfig(id="test/pricey", pricing=Pricing(input=Decimal("1000"), output=Decimal("1000")),
                    context_length=8192, max_output_tokens=1024, providers=routes),
        ModelConfig(id=FREE_MODEL, pricing=Pricing(input=Decimal(0), output=Decimal(0)), free=True,
                    context_length=8192, max_output_tokens=1024, providers=routes),
    ]


def set_clock(gw: GatewayServer, at: datetime | Callable[[], datetime]) -> None:
    """Move the plans' clock (periods, trials, daily caps) of a running gateway."""
    gw.container.plans.book.clock = at if callable(at) else (lambda: at)


def user_get(gw: GatewayServer, api_key: str, path: str) -> dict[str, Any]:
    gw.drain()
    r = httpx.get(gw.url + path, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def funds(gw: GatewayServer, api_key: str) -> tuple[int, int]:
    """(purchased balance, allowance) in nanodollars, as GET /user/balance reports them."""
    body = user_get(gw, api_key, "/user/balance")
    return int(body["balance_nanos"]), int(body["allowance_nanos"])


def assign(gw: GatewayServer, user_id: int, plan: str) -> dict[str, Any]:
    r = httpx.post(gw.url + "/admin/assign-plan", headers=admin(), json={"user_id": user_id, "plan": plan},
                   timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def rows(gw: GatewayServer, user_id: int) -> list[dict[str, Any]]:
    t = credit_transactions
    return select_rows(gw, sa.select(t).where(t.c.user_id == user_id).order_by(t.c.id))


def assert_pools_balance(gw: GatewayServer, user_id: int) -> list[dict[str, Any]]:
    """Each pool's ledger rows sum to its column, with consistent running totals; nothing negative or held."""
    gw.drain()
    ledger = rows(gw, user_id)
    row = select_rows(gw, sa.select(users).where(users.c.id == user_id))[0]
    assert sum(r["amount_nanos"] for r in ledger) == row["balance_nanos"] >= 0
    assert sum(r["allowance_nanos"] for r in ledger) == row["allowance_nanos"] >= 0
    balance = allowance = 0
    for r in ledger:
        balance += r["amount_nanos"]
        allowance += r["allowance_nanos"]
        assert r["balance_after_nanos"] == balance, r
        if r["allowance_after_nanos"] is not None:
            assert r["allowance_after_nanos"] == allowance, r
    assert row["held_nanos"] == 0
    assert gw.run(gw.container.credits.funds(user_id)) == (row["balance_nanos"], row["allowance_nanos"])
    return ledger
