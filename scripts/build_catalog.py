#!/usr/bin/env python3
"""Derive the bundled model catalog (gatewayz/catalog/data/models.json) from LiteLLM's MIT-licensed price
data (../shared/data/model_prices.json), for the built-in providers that speak the OpenAI wire format.

  python scripts/build_catalog.py [PATH_TO_model_prices.json]

Canonical ids follow the `org/model` convention of OpenRouter, so an aggregator route uses the canonical id
as its upstream model. Models of a maker (OpenAI, xAI, Mistral, DeepSeek...) are served by the maker, then
by aggregators; open-weight models by every host that serves them, cheapest first, then aggregators."""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayz.providers.registry import BUILTIN, ProviderInfo  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "model_prices.json"
OUT = ROOT / "gatewayz" / "catalog" / "data" / "models.json"
ORGS = {"meta-llama": "meta-llama", "meta": "meta-llama", "deepseek-ai": "deepseek", "deepseek": "deepseek",
        "qwen": "qwen", "mistralai": "mistralai", "google": "google", "moonshotai": "moonshotai",
        "zai-org": "z-ai", "thudm": "z-ai", "minimaxai": "minimax", "minimax": "minimax",
        "nousresearch": "nousresearch", "microsoft": "microsoft", "openai": "openai"}
NAME_ORGS = (("llama", "meta-llama"), ("deepseek", "deepseek"), ("qwen", "qwen"), ("qwq", "qwen"),
             ("mixtral", "mistralai"), ("mistral", "mistralai"), ("gemma", "google"), ("kimi", "moonshotai"),
             ("glm", "z-ai"), ("gpt-oss", "openai"), ("minimax", "minimax"))
SKIP = re.compile(r"(^ft:|computer-use|realtime|audio|search|transcribe|tts|moderation|embed|guard|image|dall-e|"
                  r"vision-preview|container|instruct-0914)", re.I)


def per_million(per_token: float) -> str:
    value = (Decimal(str(per_token)) * 1_000_000).quantize(Decimal("0.000001")).normalize()
    return format(value, "f")


def normalize(org: str | None, name: str) -> str | None:
    """An open-weight model's canonical id, or None when its family is unknown."""
    n = name.lower()
    n = re.sub(r"^llama-v(\d)p(\d)", r"llama-\1.\2", n)
    n = re.sub(r"^llama-v(\d)", r"llama-\1", n)
    n = re.sub(r"^meta-llama-", "llama-", n)
    n = re.sub(r"-(turbo|versatile|fp8|fp16|int8|bf16)$", "", n)
    n = n.replace("_", "-")
    canon_org = ORGS.get(org.lower()) if org else None
    if canon_org is None:
        canon_org = next((o for prefix, o in NAME_ORGS if n.startswith(prefix)), None)
    if canon_org is None:
        return None
    if canon_org == "meta-llama" and re.search(r"\d+b$", n):
        n += "-instruct"
    return f"{canon_org}/{n}"


def collect(data: dict[str, dict[str, object]], info: ProviderInfo) -> list[tuple[str, str, dict[str, object]]]:
    """(canonical id, upstream model id, price row) for each chat model of a provider."""
    out = []
    for key, row in data.items():
        if not isinstance(row, dict) or row.get("litellm_provider") != info.catalog or row.get("mode") != "chat":
            continue
        if row.get("input_cost_per_token") is None or row.get("output_cost_per_token") is None or SKIP.search(key):
            continue
        if not (row["input_cost_per_token"] or row["output_cost_per_token"]):  # type: ignore[operator]
            continue  # a zero price is a preview or a mistake: never served at no charge by default
        model = key.split("/", 1)[1] if key.startswith(f"{info.catalog}/") else key
        bare = model[len(info.model_prefix):] if info.model_prefix and model.startswith(info.model_prefix) else model
        if "@" in model or " " in model:
            continue
        if info.role == "maker":
            canonical: str | None = f"{info.makers[0]}/{bare.split('/')[-1].lower()}"
        elif info.role == "aggregator":
            canonical = bare.lower() if "/" in bare else None
        else:
            org, _, name = bare.rpartition("/")
            canonical = normalize(org or None, name)
        if canonical:
            out.append((canonical, info.model_prefix + bare, row))
    return out


def build(source: Path) -> list[dict[str, object]]:
    data = json.loads(source.read_text())
    models: dict[str, dict[str, object]] = {}
    for info in BUILTIN:
        if info.catalog is None:
            continue
        for canonical, upstream, row in collect(data, info):
            entry = models.setdefault(canonical, {"id": canonical, "routes": [], "context_length": 0,
                                                  "max_output_tokens": 0})
            routes: list[dict[str, str]] = entry["routes"]  # type: ignore[assignment]
            if any(r["provider"] == info.name for r in routes):
                continue
            routes.append({"provider": info.name, "model": upstream,
                           "input": per_million(row["input_cost_per_token"]),  # type: ignore[arg-type]
                           "output": per_million(row["output_cost_per_token"]), "role": info.role})
            ctx = int(row.get("max_input_tokens") or row.get("max_tokens") or 0)  # type: ignore[call-overload]
            out = int(row.get("max_output_tokens") or ctx)  # type: ignore[call-overload]
            entry["context_length"] = max(int(entry["context_length"]), ctx)  # type: ignore[call-overload]
            entry["max_output_tokens"] = max(int(entry["max_output_tokens"]), out)  # type: ignore[call-overload]
    result = []
    for canonical in sorted(models):
        entry = models[canonical]
        routes = entry["routes"]  # type: ignore[assignment]
        if not any(r["role"] != "aggregator" for r in routes) or not entry["context_length"]:
            continue  # served only by an aggregator's own naming: not ours to guess
        makers = [r for r in routes if r["role"] == "maker"]
        hosts = sorted((r for r in routes if r["role"] == "host"),
                       key=lambda r: Decimal(r["input"]) + Decimal(r["output"]))
        aggregators = [r for r in routes if r["role"] == "aggregator"]
        # OpenRouter names models by these same canonical ids; it is priced at the dearest known route so
        # that serving through it never undercharges.
        dearest = max(routes, key=lambda r: Decimal(r["input"]) + Decimal(r["output"]))
        aggregators.append({"provider": "openrouter", "model": canonical, "input": dearest["input"],
                            "output": dearest["output"], "role": "aggregator"})
        # The maker first; hosts only exist for open-weight models, which fail over across all of them.
        entry["routes"] = [*makers, *hosts, *aggregators]
        for r in entry["routes"]:  # type: ignore[attr-defined]
            del r["role"]
        result.append(entry)
    return result


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    models = build(source)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"source": "LiteLLM model_prices_and_context_window.json (MIT); see NOTICE",
                               "models": models}, indent=1, sort_keys=True) + "\n")
    print(f"{len(models)} models -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
