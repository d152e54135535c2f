"""The bundled catalog (data/models.json, derived by scripts/build_catalog.py from LiteLLM's MIT-licensed price
data; notice in data/NOTICE): every model the enabled built-in providers serve, with its prices, context
length and the model-aware failover order of its providers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from gatewayz.settings import ModelConfig, ModelRoute, Pricing

DATA = Path(__file__).parent / "data" / "models.json"

# Friendly names that are not simply the part after the slash.
CURATED_ALIASES = {
    "r1": "deepseek/deepseek-r1",
    "deepseek-reasoner": "deepseek/deepseek-r1",
    "deepseek-chat": "deepseek/deepseek-v3",
    "llama-3.3-70b": "meta-llama/llama-3.3-70b-instruct",
    "llama-3.1-8b": "meta-llama/llama-3.1-8b-instruct",
    "llama-3.1-70b": "meta-llama/llama-3.1-70b-instruct",
}


def load_raw(path: Path = DATA) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = json.loads(path.read_text())["models"]
    return models


def builtin_models(enabled: set[str], taken: set[str], raw: list[dict[str, Any]] | None = None) -> list[ModelConfig]:
    """Models with at least one enabled provider; ids and aliases already in `taken` (the config's) win."""
    out: list[ModelConfig] = []
    candidates = [m for m in (raw if raw is not None else load_raw()) if m["id"] not in taken]
    bare_count: dict[str, int] = {}
    for m in candidates:
        bare = m["id"].rsplit("/", 1)[-1]
        bare_count[bare] = bare_count.get(bare, 0) + 1
    served = {m["id"] for m in candidates if any(r["provider"] in enabled for r in m["routes"])}
    aliases_for: dict[str, list[str]] = {}
    for alias, target in CURATED_ALIASES.items():
        if target in served and alias not in taken and alias not in served:
            aliases_for.setdefault(target, []).append(alias)
    for m in candidates:
        routes = [r for r in m["routes"] if r["provider"] in enabled]
        if not routes:
            continue
        bare = m["id"].rsplit("/", 1)[-1]
        aliases = list(aliases_for.get(m["id"], []))
        if bare_count[bare] == 1 and bare not in taken and bare not in served and bare != m["id"]:
            aliases.insert(0, bare)
        out.append(ModelConfig(
            id=m["id"], aliases=aliases, context_length=max(int(m["context_length"]), 1),
            max_output_tokens=max(int(m["max_output_tokens"]), 1) if m["max_output_tokens"] else None,
            mode=m.get("mode", "chat"), pricing=_pricing(routes[0]),
            providers=[ModelRoute(provider=r["provider"], model=r["model"], pricing=_pricing(r)) for r in routes]))
    return out


def _pricing(route: dict[str, Any]) -> Pricing:
    return Pricing(**{k: Decimal(route[k]) for k in ("input", "output", "image", "audio_minute", "characters")
                      if k in route})
