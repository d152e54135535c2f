"""Rate limits through HTTP: per key requests and tokens, per IP for failed authentication, headers, no charge."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.emulator import Emulator

HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}


def test_key_requests_per_minute(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], limits={"requests_per_minute": 3, "tokens_per_minute": 0})
    user = gw.create_user("1")
    auth = {"Authorization": f"Bearer {user['api_key']}"}
    ok = httpx.post(gw.url + "/v1/chat/completions", headers=auth, json=HI)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-limit-requests"] == "3" and ok.headers["x-ratelimit-remaining-requests"] == "2"
    for _ in range(2):
        assert httpx.post(gw.url + "/v1/chat/completions", headers=auth, json=HI).status_code == 200
    balance = gw.balance_nanos(user["api_key"])
    sent = len(emu_a.requests)
    refused = httpx.post(gw.url + "/v1/chat/completions", headers=auth, json=HI)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    h = refused.headers
    assert int(h["retry-after"]) >= 1 and h["x-ratelimit-limit"] == "3" and h["x-ratelimit-remaining"] == "0"
    assert int(h["x-ratelimit-reset"]) >= 1 and h["x-ratelimit-reason"] == "key_requests"
    assert len(emu_a.requests) == sent and gw.balance_nanos(user["api_key"]) == balance  # cost nothing
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=user["api_key"], max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**HI)  # type: ignore[call-overload]
    other = gw.create_user("1")  # another key has its own budget
    assert httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {other['api_key']}"},
                      json=HI).status_code == 200


def test_key_tokens_per_minute_counts_real_usage(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], limits={"requests_per_minute": 0, "tokens_per_minute": 200})
    auth = {"Authorization": f"Bearer {gw.create_user('1')['api_key']}"}
    first = httpx.post(gw.url + "/v1/chat/completions", headers=auth, json={**HI, "max_tokens": 100})
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "200"
    # the estimate held ~115 tokens; the real usage (about 10) is counted once the answer is out
    second = httpx.post(gw.url + "/v1/chat/completions", headers=auth, json={**HI, "max_tokens": 150})
    assert second.status_code == 200
    refused = httpx.post(gw.url + "/v1/chat/completions", headers=auth, json={**HI, "max_tokens": 190})
    assert refused.status_code == 429 and refused.headers["x-ratelimit-reason"] == "key_tokens"


def test_failed_authentication_is_limited_per_ip(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], limits={"ip_requests_per_minute": 3})
    bad = {"Authorization": "Bearer gw_live_" + "x" * 43}
    codes = [httpx.post(gw.url + "/v1/chat/completions", headers=bad, json=HI).status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    good = {"Authorization": f"Bearer {gw.create_user('1')['api_key']}"}
    assert httpx.post(gw.url + "/v1/chat/completions", headers=good, json=HI).status_code == 200  # exempt
