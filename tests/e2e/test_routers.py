"""router:general:* and router:code:* through the chat endpoint, and their explanation endpoints."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai

from gatewayz.settings import ModelConfig, ModelRoute, Pricing, RouterPriors
from tests.conftest import GatewayFactory
from tests.emulator import Emulator


def _models() -> list[ModelConfig]:
    def model(mid: str, price: str, quality: float, swe: float) -> ModelConfig:
        return ModelConfig(id=mid, pricing=Pricing(input=Decimal(price), output=Decimal(price)), context_length=8192,
                           max_output_tokens=256, priors=RouterPriors(quality=quality, swe_bench=swe, agentic=swe),
                           providers=[ModelRoute(provider="emu-a", model=mid.split("/")[1])])
    return [model("lab/strong", "10", 90, 70), model("lab/cheap", "0.5", 55, 32)]


def test_routers_choose_serve_and_explain(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], models=_models())
    key = gw.create_user("5")["api_key"]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    hi = [{"role": "user", "content": "hi"}]
    assert client.chat.completions.create(model="router:general:quality", messages=hi).model == "lab/strong"
    assert client.chat.completions.create(model="router:general:cost", messages=hi).model == "lab/cheap"
    assert emu_a.requests[-1].json["model"] == "cheap"
    assert client.chat.completions.create(model="router:code:price", messages=hi).model == "lab/cheap"
    hard = [{"role": "user", "content": "Refactor this architecture and debug the deadlock: ```code```"}]
    assert client.chat.completions.create(model="router:code:auto", messages=hard).model == "lab/strong"

    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(gw.url + "/code-router/test", headers=auth, json={"mode": "auto", "messages": hard})
    assert r.status_code == 200 and r.json()["model"] == "lab/strong" and r.json()["reason"]
    r = httpx.post(gw.url + "/general-router/test", headers=auth, json={"mode": "balanced", "messages": hi})
    assert r.status_code == 200 and {c["model"] for c in r.json()["candidates"]} == {"lab/strong", "lab/cheap"}
    assert httpx.post(gw.url + "/general-router/test", json={"mode": "quality"}).status_code == 401
    tiers = httpx.get(gw.url + "/code-router/tiers").json()["data"]
    assert [t["model"] for t in tiers] == ["lab/strong", "lab/cheap"] and tiers[0]["tier"] == 1
    assert "quality" in httpx.get(gw.url + "/general-router/settings/options").json()["modes"]
    bad = httpx.post(gw.url + "/v1/chat/completions", headers=auth, json={"model": "router:general:best",
                                                                         "messages": hi})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "model_not_found"
