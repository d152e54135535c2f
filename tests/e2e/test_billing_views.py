"""What a customer sees of their money: the ledger with a real total, one request's cost, low-balance header."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway_server import GatewayServer

HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hello there"}]}


def _auth(user: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['api_key']}"}


def test_transactions_paginate_with_real_total(gateway: GatewayServer, user: dict[str, Any]) -> None:
    for _ in range(5):
        assert httpx.post(gateway.url + "/v1/chat/completions", headers=_auth(user), json=HI).status_code == 200
    page = httpx.get(gateway.url + "/credits/transactions?limit=2&offset=1", headers=_auth(user)).json()
    assert page["total"] == 6 and len(page["data"]) == 2  # opening credit + 5 charges
    everything = httpx.get(gateway.url + "/credits/transactions?limit=100", headers=_auth(user)).json()["data"]
    assert everything[-1]["type"] == "admin_credit"
    assert sum(t["amount_nanos"] for t in everything) == gateway.balance_nanos(user["api_key"])
    assert httpx.get(gateway.url + "/credits/transactions?limit=0", headers=_auth(user)).status_code == 400


def test_generation_lookup(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions", headers={**_auth(user), "X-Request-ID": "gen-1"}, json=HI)
    cost = r.json()["usage"]["cost"]
    g = httpx.get(gateway.url + "/v1/generation?id=gen-1", headers=_auth(user)).json()["data"]
    assert g["cost"] == cost and g["provider"] == "emu-a" and g["status"] == 200 and g["model"] == "test/echo"
    assert g["prompt_tokens"] == r.json()["usage"]["prompt_tokens"] and g["latency_ms"] > 0
    other = gateway.create_user("1")
    assert httpx.get(gateway.url + "/v1/generation?id=gen-1", headers=_auth(other)).status_code == 404
    assert httpx.get(gateway.url + "/v1/generation?id=nope", headers=_auth(user)).status_code == 404


def test_low_balance_header(gateway: GatewayServer) -> None:
    rich, poor = gateway.create_user("10"), gateway.create_user("0.05")
    r = httpx.post(gateway.url + "/v1/chat/completions", headers=_auth(rich), json=HI)
    assert "x-credits-remaining" not in r.headers
    r = httpx.post(gateway.url + "/v1/chat/completions", headers=_auth(poor), json={**HI, "max_tokens": 10})
    assert r.status_code == 200 and 0 < float(r.headers["x-credits-remaining"]) < 0.05
