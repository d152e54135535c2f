"""Google as built-in providers: enabled from the environment, Vertex AI first for google/gemini-* (AC-2.1.4)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

from gatewayz.catalog.builtin import builtin_models
from gatewayz.providers.adapter import make_adapter
from gatewayz.providers.gemini.adapter import GeminiAdapter
from gatewayz.providers.spec import builtin_specs
from gatewayz.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def build_catalog(prices: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("build_catalog", ROOT / "scripts" / "build_catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = tmp_path / "prices.json"
    source.write_text(json.dumps(prices))
    return module.build(source)  # type: ignore[no-any-return]


def test_google_models_go_to_vertex_first_then_the_gemini_api(tmp_path: Path) -> None:
    row = {"mode": "chat", "input_cost_per_token": 3e-07, "output_cost_per_token": 2.5e-06,
           "max_input_tokens": 1048576, "max_output_tokens": 65535}
    raw = build_catalog({"gemini/gemini-2.5-flash": {**row, "litellm_provider": "gemini"},
                         "gemini-2.5-flash": {**row, "litellm_provider": "vertex_ai-language-models"},
                         "gemini/gemini-2.5-flash-preview-tts": {**row, "litellm_provider": "gemini",
                                                                 "mode": "audio_speech"}}, tmp_path)
    assert [m["id"] for m in raw] == ["google/gemini-2.5-flash"]
    assert [(r["provider"], r["model"]) for r in raw[0]["routes"]] == [
        ("vertex", "gemini-2.5-flash"), ("gemini", "gemini-2.5-flash"), ("openrouter", "google/gemini-2.5-flash")]

    env = {"VERTEXAI_PROJECT": "p1", "VERTEXAI_LOCATION": "europe-west4", "GEMINI_API_KEY": "AIza-k",
           "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/sa.json"}
    settings = load_settings(env=env)
    assert set(settings.builtin_enabled()) == {"vertex", "gemini"}
    models = {m.id: m for m in builtin_models(set(settings.builtin_enabled()), set(), raw)}
    flash = models["google/gemini-2.5-flash"]
    assert [r.provider for r in flash.providers] == ["vertex", "gemini"] and "gemini-2.5-flash" in flash.aliases
    only_studio = builtin_models({"gemini"}, set(), raw)
    assert [r.provider for r in only_studio[0].providers] == ["gemini"]

    specs = builtin_specs(settings)
    assert (specs["vertex"].wire, specs["gemini"].wire) == ("vertex", "gemini")
    assert specs["vertex"].options == {"project": "p1", "location": "europe-west4",
                                       "credentials_file": "/secrets/sa.json"}
    studio = make_adapter(specs["gemini"])
    assert isinstance(studio, GeminiAdapter) and isinstance(make_adapter(specs["vertex"]), GeminiAdapter)
    out = asyncio.run(studio.request({"messages": [{"role": "user", "content": "hi"}]}, "gemini-2.5-flash", True))
    assert out.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:"
                       "streamGenerateContent?alt=sse")
    assert out.headers["x-goog-api-key"] == "AIza-k"
