"""The bundled catalog: enabled by provider keys, model-aware failover order, aliases without loops."""

from __future__ import annotations

from decimal import Decimal

from gatewayz.catalog.builtin import builtin_models, load_raw
from gatewayz.catalog.service import Catalog
from gatewayz.providers.adapter import make_adapter
from gatewayz.providers.openai_wire import OpenAIAdapter
from gatewayz.providers.registry import BUILTIN
from gatewayz.providers.spec import builtin_specs
from gatewayz.settings import ModelConfig, ModelRoute, Pricing, Settings, load_settings


def _by_id(enabled: set[str], taken: frozenset[str] = frozenset()) -> dict[str, ModelConfig]:
    return {m.id: m for m in builtin_models(enabled, set(taken))}


def test_every_bundled_model_is_priced_and_routed_by_known_providers() -> None:
    names = {p.name for p in BUILTIN}
    raw = load_raw()
    assert len(raw) > 300
    for m in raw:
        assert m["routes"] and m["context_length"] > 0
        for r in m["routes"]:
            assert r["provider"] in names and Decimal(r["input"]) >= 0 and Decimal(r["output"]) >= 0
            # nothing falls to a default price: tokens, or the media model's own unit, are priced
            units = sum(Decimal(r.get(k, "0")) for k in ("input", "output", "image", "audio_minute", "characters"))
            assert units > 0, (m["id"], r)
    modes = {m.get("mode", "chat") for m in raw}
    assert modes == {"chat", "embedding", "image", "transcription", "speech"}


def test_first_party_models_fail_over_only_to_their_maker_and_aggregators() -> None:
    every = {p.name for p in BUILTIN}
    models = _by_id(every)
    gpt = models["openai/gpt-4o-mini"]
    assert [r.provider for r in gpt.providers][0] == "openai"
    assert {r.provider for r in gpt.providers} <= {"openai", "openrouter", "vercel"}
    assert gpt.pricing == Pricing(input=Decimal("0.15"), output=Decimal("0.6"))
    llama = [r.provider for r in models["meta-llama/llama-3.3-70b-instruct"].providers]
    assert len(llama) >= 5 and llama[-1] == "openrouter"  # open weights: every host, aggregators last
    prices = [r.pricing.input + r.pricing.output for r in models["meta-llama/llama-3.3-70b-instruct"].providers
              if r.pricing and r.provider not in ("openrouter", "vercel")]
    assert prices == sorted(prices)  # cheapest host first


def test_only_enabled_providers_and_fireworks_ids() -> None:
    models = _by_id({"fireworks"})
    assert models and all(r.provider == "fireworks" for m in models.values() for r in m.providers)
    assert all(r.model.startswith("accounts/fireworks/models/") for m in models.values() for r in m.providers)
    assert _by_id(set()) == {}


def test_aliases_resolve_without_loops_and_config_wins() -> None:
    config = [ModelConfig(id="openai/gpt-4o", pricing=Pricing(input=Decimal(9), output=Decimal(9)),
                          providers=[ModelRoute(provider="openai", model="gpt-4o")])]
    models = [*config, *builtin_models({"openai", "deepseek", "together"}, {"openai/gpt-4o"})]
    catalog = Catalog(models)
    assert catalog.resolve("gpt-4o-mini").id == "openai/gpt-4o-mini"
    assert catalog.resolve("openai/gpt-4o").input_per_million == Decimal(9)  # the config's model
    assert catalog.resolve("r1").id == "deepseek/deepseek-r1"
    ids = {e.id for e in catalog.entries}
    for e in catalog.entries:
        for alias in e.aliases:
            assert alias not in ids and alias != e.id  # one hop, never a loop


def test_provider_keys_in_the_environment_enable_builtins() -> None:
    s = load_settings(env={"GROQ_API_KEY": "g", "OLLAMA_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert set(s.builtin_enabled()) == {"groq", "ollama"}
    specs = builtin_specs(s)
    groq, ollama = make_adapter(specs["groq"]), make_adapter(specs["ollama"])
    assert isinstance(groq, OpenAIAdapter) and isinstance(ollama, OpenAIAdapter)
    assert groq.headers["authorization"] == "Bearer g"
    assert groq.url == "https://api.groq.com/openai/v1/chat/completions"
    assert "authorization" not in ollama.headers
    named = Settings(providers=[{"name": "groq", "api_key": "x"}])  # type: ignore[list-item]
    assert named.providers[0].base_url == "https://api.groq.com/openai/v1"
