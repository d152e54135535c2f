"""Azure OpenAI as an upstream: deployments with a dated api-version and the v1 API, api-key auth, chat
(streaming included) and embeddings, with the openai SDK on the client side."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest

from gatewayz.settings import ModelConfig, ModelRoute, Pricing, ProviderConfig
from tests.conftest import EMU_KEY, GatewayFactory
from tests.emulator import Emulator, Fault
from tests.emulator.azure_format import AzureFormat
from tests.gateway_server import GatewayServer


@pytest.fixture
def azure() -> Iterator[Emulator]:
    with Emulator(name="az", api_key=EMU_KEY, formats=[AzureFormat()]) as emu:
        yield emu


@pytest.fixture
def make_gw(gateway_factory: GatewayFactory, azure: Emulator, emu_a: Emulator):  # type: ignore[no-untyped-def]
    def make(api_version: str | None, with_fallback: bool = False) -> GatewayServer:
        options = {"api_version": api_version} if api_version else {}
        extra = [ProviderConfig(name="az", type="azure", base_url=azure.url, api_key=EMU_KEY, options=options)]
        routes = [ModelRoute(provider="az", model="my-gpt4o")]
        if with_fallback:
            routes.append(ModelRoute(provider="emu-a", model="ok-model"))
        models = [ModelConfig(id="openai/gpt-4o", pricing=Pricing(input=Decimal("2.5"), output=Decimal("10")),
                              providers=routes),
                  ModelConfig(id="openai/embed", mode="embedding", pricing=Pricing(input=Decimal("0.02")),
                              providers=[ModelRoute(provider="az", model="my-embed")])]
        return gateway_factory([emu_a], models=models, extra_providers=extra)
    return make


def _client(gw: GatewayServer) -> openai.OpenAI:
    user = gw.create_user("10")
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=user["api_key"], max_retries=0, timeout=20)


def test_deployment_addressing_with_api_key(make_gw, azure: Emulator) -> None:  # type: ignore[no-untyped-def]
    client = _client(make_gw(None))
    r = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi there"}])
    assert r.choices[0].message.content == "Echo: hi there"
    assert r.model == "openai/gpt-4o"
    req = azure.last_request
    assert req is not None
    assert req.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert req.query["api-version"] == "2024-10-21"
    assert req.headers["api-key"] == EMU_KEY and "authorization" not in req.headers
    # (the emulator refuses a body with a model on deployment routes, as the model is in the URL)
    stream = client.chat.completions.create(model="openai/gpt-4o", stream=True,
                                            messages=[{"role": "user", "content": "one two"}],
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: one two"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    emb = client.embeddings.create(model="openai/embed", input="a b c")
    assert emb.usage.prompt_tokens == 3
    assert azure.last_request is not None and azure.last_request.path == "/openai/deployments/my-embed/embeddings"


def test_v1_api_sends_the_model_in_the_body(make_gw, azure: Emulator) -> None:  # type: ignore[no-untyped-def]
    client = _client(make_gw("v1"))
    r = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "Echo: hello"
    req = azure.last_request
    assert req is not None and req.path == "/openai/v1/chat/completions" and req.json["model"] == "my-gpt4o"


def test_azure_failure_fails_over_and_client_errors_pass_through(make_gw, azure: Emulator,  # type: ignore[no-untyped-def]
                                                                 emu_a: Emulator) -> None:
    client = _client(make_gw(None, with_fallback=True))
    azure.push_fault(Fault(status=429))
    r = client.chat.completions.with_raw_response.create(model="openai/gpt-4o",
                                                         messages=[{"role": "user", "content": "x"}])
    assert r.headers["x-gateway-provider"] == "emu-a"
    azure.push_fault(Fault(status=400, error_message="content filtered", error_code="content_filter"))
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["code"] == "content_filter"  # type: ignore[index]
