"""Layer 3: chat completions without a credential for the listed free models, limited per address, never charged;
anything else without a credential is a 401."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatewayz.app import create_app
from gatewayz.settings import ConfigError, ModelConfig, ModelRoute, Pricing, Settings
from tests.conftest import GatewayFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, GatewayServer

CHAT = "/v1/chat/completions"
FREE = {"model": "test/free", "messages": [{"role": "user", "content": "hello there"}]}
LIMIT_HEADERS = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                 "x-ratelimit-reason", "x-ratelimit-mode")


def _models(emu: Emulator) -> list[ModelConfig]:
    route = [ModelRoute(provider=f"emu-{emu.name}", model="free-upstream")]
    paid = [ModelRoute(provider=f"emu-{emu.name}", model="paid-upstream")]
    return [ModelConfig(id="test/free", aliases=["freebie"], pricing=Pricing(), free=True, providers=route),
            ModelConfig(id="test/free-unlisted", pricing=Pricing(), free=True, providers=route),
            ModelConfig(id="test/echo", pricing=Pricing(input=Decimal("1"), output=Decimal("2")), providers=paid)]


def _gateway(factory: GatewayFactory, emu: Emulator, **anonymous: Any) -> GatewayServer:
    cfg = {"enabled": True, "models": ["test/free"], "requests_per_minute_per_ip": 3,
           "tokens_per_minute_per_ip": 5000, **anonymous}
    return factory([emu], models=_models(emu), anonymous=cfg, trusted_proxies=["127.0.0.1"])


def _from(ip: str) -> dict[str, str]:
    return {"x-forwarded-for": ip}


def test_free_model_without_credentials_is_served_and_never_charged(gateway_factory: GatewayFactory,
                                                                     emu_a: Emulator) -> None:
    gw = _gateway(gateway_factory, emu_a)
    r = httpx.post(gw.url + CHAT, json=FREE, headers=_from("198.51.100.1"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "test/free" and body["choices"][0]["message"]["content"] == "Echo: hello there"
    assert body["usage"]["cost"] == 0
    # the success headers are there with layer 3's per-address budget
    assert r.headers["x-ratelimit-limit-requests"] == "3" and r.headers["x-ratelimit-remaining-requests"] == "2"
    assert r.headers["x-ratelimit-limit-tokens"] == "5000"
    assert "x-credits-remaining" not in r.headers
    assert emu_a.requests[-1].json["model"] == "free-upstream"

    # the OpenAI SDK (it insists on a key: an empty Authorization header replaces it), by alias, streaming
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=20,
                        default_headers={"Authorization": "", **_from("198.51.100.2")})
    chunks = list(sdk.chat.completions.create(model="freebie", messages=FREE["messages"], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello there"

    # nothing was recorded against any account, and the metrics count the requests like any other
    gw.drain()
    with gw.admin() as admin:
        users = admin.get("/admin/users").json()
        text = admin.get("/metrics").text
    assert users["total"] == 0
    served = sum(s.value for f in text_string_to_metric_families(text) if f.name == "inference_requests"
                 for s in f.samples if s.name.endswith("_total") and s.labels.get("model") == "test/free"
                 and s.labels.get("status") == "200")
    assert served == 2


def test_everything_else_without_credentials_is_refused(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = _gateway(gateway_factory, emu_a)
    refused = {
        "paid model": (CHAT, {**FREE, "model": "test/echo"}, {}),
        "free but unlisted": (CHAT, {**FREE, "model": "test/free-unlisted"}, {}),
        "unknown model": (CHAT, {**FREE, "model": "nope/nothing"}, {}),
        "router": (CHAT, {**FREE, "model": "router:general:balanced"}, {}),
        "not json": (CHAT, None, {}),
        "a wrong key": (CHAT, FREE, {"Authorization": "Bearer gw_live_" + "x" * 43}),
        "other dialect": ("/v1/messages", {**FREE, "max_tokens": 10}, {}),
    }
    sent = len(emu_a.requests)
    for what, (path, body, headers) in refused.items():
        r = httpx.post(gw.url + path, json=body, content=None if body is not None else b"{oops",
                       headers={**headers, **_from(f"203.0.113.{len(what)}")})
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), what
    assert len(emu_a.requests) == sent

    # a fallback outside the listed models is never tried for an anonymous caller
    emu_a.set_default_fault(Fault(status=500))
    r = httpx.post(gw.url + CHAT, json={**FREE, "models": ["test/echo"]}, headers=_from("203.0.113.99"))
    assert r.status_code == 502
    assert {q.json["model"] for q in emu_a.requests[sent:]} == {"free-upstream"}


def test_off_by_default(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], models=_models(emu_a))
    r = httpx.post(gw.url + CHAT, json=FREE)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


def test_per_address_limits_are_stricter_and_say_so(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = _gateway(gateway_factory, emu_a, tokens_per_minute_per_ip=400)
    codes = [httpx.post(gw.url + CHAT, json=FREE, headers=_from("192.0.2.10")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = httpx.post(gw.url + CHAT, json=FREE, headers=_from("192.0.2.10"))
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    h = refused.headers
    assert all(name in h for name in LIMIT_HEADERS), dict(h)
    assert h["x-ratelimit-reason"] == "anonymous_requests" and h["x-ratelimit-limit"] == "3"
    assert h["x-ratelimit-remaining"] == "0" and int(h["retry-after"]) >= 1 and h["x-ratelimit-mode"] == "normal"
    # another address has its own budget; a user key is not limited by the anonymous budget at all
    assert httpx.post(gw.url + CHAT, json=FREE, headers=_from("192.0.2.11")).status_code == 200
    key = gw.create_user("1")["api_key"]
    ok = httpx.post(gw.url + CHAT, json=FREE, headers={"Authorization": f"Bearer {key}", **_from("192.0.2.10")})
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-requests"] == "1200"

    # tokens per address: the real usage of an answer counts, then the next estimate no longer fits
    emu_a.push_fault(Fault(content=" ".join(["word"] * 350)))
    used = httpx.post(gw.url + CHAT, json=FREE, headers=_from("192.0.2.12"))
    assert used.status_code == 200 and used.json()["usage"]["completion_tokens"] == 350
    r = httpx.post(gw.url + CHAT, json={**FREE, "max_tokens": 100}, headers=_from("192.0.2.12"))
    assert r.status_code == 429 and r.headers["x-ratelimit-reason"] == "anonymous_tokens"
    assert r.headers["x-ratelimit-limit"] == "400"


def test_anonymous_requests_count_against_layer_1(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    """Anonymous traffic is unauthenticated traffic: the per-address layer 1 budget counts it too."""
    gw = gateway_factory([emu_a], models=_models(emu_a), trusted_proxies=["127.0.0.1"],
                         limits={"ip_requests_per_minute": 2},
                         anonymous={"enabled": True, "models": ["test/free"], "requests_per_minute_per_ip": 10})
    ip = _from("192.0.2.50")
    assert httpx.post(gw.url + CHAT, json=FREE, headers=ip).status_code == 200
    assert httpx.post(gw.url + CHAT, json={**FREE, "model": "test/echo"}, headers=ip).status_code == 401
    r = httpx.post(gw.url + CHAT, json=FREE, headers=ip)
    assert r.status_code == 429 and r.headers["x-ratelimit-reason"] == "ip"


def test_configuration_is_checked(tmp_path: Any, emu_a: Emulator) -> None:
    base: dict[str, Any] = {"admin_key": ADMIN_KEY, "data_dir": tmp_path,
                            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
                            "providers": [{"name": "emu-a", "base_url": emu_a.base_url}],
                            "models": [m.model_dump() for m in _models(emu_a)]}
    with pytest.raises(ConfigError, match="not a free model"):
        create_app(Settings.model_validate({**base, "anonymous": {"enabled": True, "models": ["test/echo"]}}))
    with pytest.raises(ConfigError, match="not a model of the catalog"):
        create_app(Settings.model_validate({**base, "anonymous": {"enabled": True, "models": ["nope"]}}))
    with pytest.raises(ValueError, match="must not exceed limits.requests_per_minute"):
        Settings.model_validate({**base, "limits": {"requests_per_minute": 5},
                                 "anonymous": {"enabled": True, "models": ["test/free"],
                                               "requests_per_minute_per_ip": 10}})
