"""Every built-in provider spec loads and builds its adapter, and every wire builds a well-formed request."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gatewayz.providers.adapter import WIRES, make_adapter
from gatewayz.providers.registry import BUILTIN, env_names
from gatewayz.providers.spec import builtin_specs
from gatewayz.settings import ProviderConfig, load_settings

BODY = {"model": "x", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 5}


def _env() -> dict[str, str]:
    """Every variable the registry reads, set: every built-in provider is enabled."""
    env = {name: f"test-{name.lower()}" for name in env_names()}
    for name in env_names():
        if name.endswith("_BASE_URL") or name == "AZURE_OPENAI_ENDPOINT":
            env[name] = "http://127.0.0.1:9/v1"
    env["GOOGLE_APPLICATION_CREDENTIALS"] = ""  # a file path: Vertex then needs an access token option
    env["AWS_REGION"] = "eu-west-1"
    return {k: v for k, v in env.items() if v}


def test_every_builtin_provider_loads_and_builds_a_request() -> None:
    settings = load_settings(env=_env())
    specs = builtin_specs(settings)
    assert set(specs) == {p.name for p in BUILTIN}
    assert len(specs) >= 30
    for name, spec in specs.items():
        assert spec.wire in WIRES, name
        if spec.wire == "vertex":
            spec.options["access_token"] = "token"
        adapter = make_adapter(spec)
        assert adapter.spec is spec and adapter.wire in (spec.wire, "gemini")
        out = asyncio.run(adapter.request(dict(BODY), "some-model", False))
        assert out.url.startswith(("http://", "https://")), name
        assert isinstance(orjson.loads(out.data), dict), name
        assert out.headers, name


@pytest.mark.parametrize("wire", sorted(WIRES))
def test_every_wire_is_configurable_from_yaml_shaped_config(wire: str) -> None:
    options = {"openai": {}, "azure": {"api_version": "v1"}, "anthropic": {}, "gemini": {},
               "vertex": {"project": "p", "location": "us-central1", "access_token": "t"},
               "bedrock": {"region": "us-east-1", "access_key_id": "AKID", "secret_access_key": "secret"},
               "cohere": {}}[wire]
    cfg = ProviderConfig(name=f"my-{wire}", type=wire, base_url="https://upstream.example/v1",  # type: ignore[arg-type]
                         api_key="k", options=options)
    from gatewayz.providers.spec import spec_from_config

    adapter = make_adapter(spec_from_config(cfg))
    out = asyncio.run(adapter.request(dict(BODY), "m", True))
    assert out.url.startswith("https://upstream.example")
    assert b"hi" in out.data
