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
             ("glm", "z-ai"), ("gpt-oss", "openai"), ("minimax", "minimax"), ("whisper", "openai"))
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


# Media models, served by the media endpoints of OpenAI-wire providers: the catalog mode, and the price
# fields that must all be there (per-size image prices, per-pixel and per-audio-token prices are left out:
# the gateway could not bill them exactly).
MEDIA = {"embedding": ("embedding", ("input_cost_per_token",)),
         "audio_transcription": ("transcription", ("input_cost_per_second",)),
         "audio_speech": ("speech", ("input_cost_per_character",)),
         "image_generation": ("image", ("input_cost_per_token", "output_cost_per_image_token"))}
MEDIA_WIRES = ("openai",)
MEDIA_SKIP = re.compile(r"(^\d+-x-\d+/|/|-batch|audio-preview|realtime)", re.I)


def bedrock_canonical(model: str) -> str | None:
    """Bedrock's ids are `vendor.name-vN:M` (and `us.`/`eu.`... inference profiles, left out: regions are the
    operator's choice). Anthropic's and Amazon's models keep their makers' names; other vendors' models are
    left out (their Bedrock names do not map safely onto the canonical open-weight ids)."""
    vendor, _, name = model.partition(".")
    if vendor == "anthropic":
        return "anthropic/" + re.sub(r"-v\d+(:\d+)?$", "", name).lower()
    if vendor == "amazon":
        return "amazon/" + re.sub(r":\d+$", "", name).lower()
    return None


def media_prices(row: dict[str, object], mode: str) -> dict[str, str]:
    """The route's prices in the catalog's units (USD per million tokens or characters, per second)."""
    out = {"input": per_million(row.get("input_cost_per_token") or 0),  # type: ignore[arg-type]
           "output": per_million(row.get("output_cost_per_token") or 0)}  # type: ignore[arg-type]
    if mode == "image":
        out["output"] = per_million(row["output_cost_per_image_token"])  # type: ignore[arg-type]
    if mode == "transcription":
        # Per minute, the unit providers price audio in (a per-second price like 0.017/60 is not exact).
        minute = (Decimal(str(row["input_cost_per_second"])) * 60).quantize(Decimal("0.000000001")).normalize()
        out["audio_minute"] = format(minute, "f")
        if row.get("input_cost_per_audio_token"):
            out["input"] = per_million(row["input_cost_per_audio_token"])  # type: ignore[arg-type]
    if mode == "speech":
        out["characters"] = per_million(row["input_cost_per_character"])  # type: ignore[arg-type]
    return out


def _mode_of(key: str, row: dict[str, object], info: ProviderInfo) -> str | None:
    """The catalog mode of a price row this provider can serve, or None."""
    if row.get("mode") == "chat":
        if row.get("input_cost_per_token") is None or row.get("output_cost_per_token") is None or SKIP.search(key):
            return None
        if not (row["input_cost_per_token"] or row["output_cost_per_token"]):  # type: ignore[operator]
            return None  # a zero price is a preview or a mistake: never served at no charge by default
        return "chat"
    media = MEDIA.get(str(row.get("mode")))
    if media is None or info.wire not in MEDIA_WIRES or info.role == "aggregator":
        return None
    name = key.split("/", 1)[1] if key.startswith(f"{info.catalog}/") else key
    if MEDIA_SKIP.search(name) or not all(row.get(f) for f in media[1]):
        return None
    return media[0]


def collect(data: dict[str, dict[str, object]], info: ProviderInfo) -> list[tuple[str, str, dict[str, object]]]:
    """(canonical id, upstream model id, price row) for each model of a provider (the row's "_mode" is set)."""
    out = []
    for key, row in data.items():
        if not isinstance(row, dict) or row.get("litellm_provider") != info.catalog:
            continue
        mode = _mode_of(key, row, info)
        if mode is None:
            continue
        row = {**row, "_mode": mode}
        model = key.split("/", 1)[1] if key.startswith(f"{info.catalog}/") else key
        bare = model[len(info.model_prefix):] if info.model_prefix and model.startswith(info.model_prefix) else model
        if "@" in model or " " in model:
            continue
        if info.wire == "bedrock":
            canonical: str | None = bedrock_canonical(bare)
        elif info.role == "maker":
            canonical = f"{info.makers[0]}/{bare.split('/')[-1].lower()}"
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
            mode = str(row["_mode"])
            entry = models.setdefault(canonical, {"id": canonical, "routes": [], "context_length": 0,
                                                  "max_output_tokens": 0, "mode": mode})
            routes: list[dict[str, str]] = entry["routes"]  # type: ignore[assignment]
            if entry["mode"] != mode or any(r["provider"] == info.name for r in routes):
                continue
            prices = media_prices(row, mode) if mode != "chat" else {
                "input": per_million(row["input_cost_per_token"]),  # type: ignore[arg-type]
                "output": per_million(row["output_cost_per_token"])}  # type: ignore[arg-type]
            routes.append({"provider": info.name, "model": upstream, **prices, "role": info.role})
            default = 8192 if mode != "chat" else 0  # media rows often give no context length
            ctx = int(row.get("max_input_tokens") or row.get("max_tokens") or default)  # type: ignore[call-overload]
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
        if entry["mode"] == "chat":  # the aggregators serve chat only
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
