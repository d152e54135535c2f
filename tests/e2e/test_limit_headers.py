"""Every 429 the gateway sends says when to retry and why (Retry-After, X-RateLimit-Limit, -Remaining, -Reset,
-Reason; -Mode on the request limits): layers 1 to 3, the account actions, coupons, and every upstream rate
limiting. Every answer carries OpenAI's x-ratelimit-* headers, with the default limits too (P0-5)."""

from __future__ import annotations

import httpx

from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import GatewayServer

CHAT = "/v1/chat/completions"
HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}
REQUIRED = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-reason")


def _assert_429(r: httpx.Response, reason: str, limit: str, mode: bool = True) -> None:
    assert r.status_code == 429, r.text
    h = r.headers
    assert all(name in h for name in REQUIRED), dict(h)
    assert h["x-ratelimit-reason"] == reason and h["x-ratelimit-limit"] == limit, dict(h)
    assert int(h["retry-after"]) >= 1 and int(h["x-ratelimit-reset"]) >= 1 and h["x-ratelimit-remaining"] == "0"
    assert ("x-ratelimit-mode" in h) == mode
    assert r.json()["error"]["type"] == "rate_limit_error"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_default_limits_show_on_every_answer(gateway: GatewayServer, user: dict[str, str]) -> None:
    r = httpx.post(gateway.url + CHAT, json=HI, headers=_auth(user["api_key"]))
    h = r.headers
    assert h["x-ratelimit-limit-requests"] == "1200" and h["x-ratelimit-remaining-requests"] == "1199"
    assert h["x-ratelimit-limit-tokens"] == "2000000" and int(h["x-ratelimit-remaining-tokens"]) < 2_000_000
    assert h["x-ratelimit-reset-requests"].endswith("s") and h["x-ratelimit-reset-tokens"].endswith("s")
    with httpx.stream("POST", gateway.url + CHAT, json={**HI, "stream": True}, headers=_auth(user["api_key"])) as s:
        # a 1200-a-minute budget refills a unit every 50 ms (GCRA), so it may be full again
        assert s.status_code == 200 and 1190 <= int(s.headers["x-ratelimit-remaining-requests"]) <= 1199
        s.read()
    messages = httpx.post(gateway.url + "/v1/messages", json={**HI, "max_tokens": 20}, headers=_auth(user["api_key"]))
    assert messages.status_code == 200 and messages.headers["x-ratelimit-limit-requests"] == "1200"


def test_request_limits(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], limits={"requests_per_minute": 1, "user_requests_per_minute": 2,
                                          "ip_requests_per_minute": 1})
    user = gw.create_user("1")
    key = user["api_key"]
    assert httpx.post(gw.url + CHAT, json=HI, headers=_auth(key)).status_code == 200
    _assert_429(httpx.post(gw.url + CHAT, json=HI, headers=_auth(key)), "key_requests", "1")
    # the Anthropic dialect's 429 carries them too
    _assert_429(httpx.post(gw.url + "/v1/messages", json={**HI, "max_tokens": 20}, headers=_auth(key)),
                "key_requests", "1")
    second = httpx.post(gw.url + "/user/api-keys", headers=_auth(key), json={"name": "second"}).json()["api_key"]
    assert httpx.post(gw.url + CHAT, json=HI, headers=_auth(second)).status_code == 200
    _assert_429(httpx.post(gw.url + CHAT, json=HI, headers=_auth(second)), "user_requests", "2")
    bad = _auth("gw_live_" + "x" * 43)
    assert httpx.post(gw.url + CHAT, json=HI, headers=bad).status_code == 401
    _assert_429(httpx.post(gw.url + CHAT, json=HI, headers=bad), "ip", "1")


def test_account_action_limits(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], auth={"login_attempts": 1, "registrations": 1}, limits={"key_creations_per_hour": 1},
                         coupons={"attempts_per_minute": 1})
    login = {"email": "nobody@example.com", "password": "wrong-password"}
    assert httpx.post(gw.url + "/auth/login", json=login).status_code == 401
    _assert_429(httpx.post(gw.url + "/auth/login", json=login), "login", "1", mode=False)
    assert httpx.post(gw.url + "/auth/register", json={"email": "first@example.com",
                                                       "password": "a-long-passphrase"}).status_code == 201
    _assert_429(httpx.post(gw.url + "/auth/register", json={"email": "second@example.com",
                                                            "password": "a-long-passphrase"}), "registration", "1",
                mode=False)
    key = gw.create_user("1")["api_key"]
    assert httpx.post(gw.url + "/user/api-keys", headers=_auth(key), json={"name": "one"}).status_code == 201
    _assert_429(httpx.post(gw.url + "/user/api-keys", headers=_auth(key), json={"name": "two"}), "key_creation", "1",
                mode=False)
    assert httpx.post(gw.url + "/coupons/validate", headers=_auth(key), json={"code": "NOPE1234"}).status_code == 200
    refused = httpx.post(gw.url + "/coupons/validate", headers=_auth(key), json={"code": "NOPE1234"})
    _assert_429(refused, "coupon_attempts", "1", mode=False)
    assert refused.json()["error"]["code"] == "coupon_attempts"


def test_every_upstream_rate_limiting(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], limits={"requests_per_minute": 50})
    key = gw.create_user("1")["api_key"]
    for emu in (emu_a, emu_b):
        emu.push_fault(Fault(status=429, retry_after=7))  # longer than the gateway waits to retry
    r = httpx.post(gw.url + CHAT, json=HI, headers=_auth(key))
    _assert_429(r, "upstream", "50")
    assert r.headers["retry-after"] == "7" and r.headers["x-ratelimit-reset"] == "7"
    assert r.headers["x-ratelimit-mode"] == "normal" and r.json()["error"]["code"] == "upstream_rate_limited"
