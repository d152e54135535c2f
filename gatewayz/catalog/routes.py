"""GET /v1/models and /v1/models/{id}: OpenAI's list shape plus pricing, context length and providers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gatewayz.api.deps import ContainerDep
from gatewayz.catalog.service import CatalogEntry

router = APIRouter(tags=["models"])


def model_json(e: CatalogEntry) -> dict[str, Any]:
    per_token = 1_000_000
    pricing: dict[str, Any] = {"prompt": format(e.input_per_million / per_token, "f"),
                               "completion": format(e.output_per_million / per_token, "f"),
                               "input_per_million": str(e.input_per_million),
                               "output_per_million": str(e.output_per_million), "currency": "USD"}
    if e.pricing is not None:
        for name, value in (("image", e.pricing.image), ("audio_minute", e.pricing.audio_minute),
                            ("characters_per_million", e.pricing.characters)):
            if value:
                pricing[name] = str(value)
    return {
        "id": e.id, "object": "model", "created": 0, "owned_by": e.id.split("/")[0] if "/" in e.id else "gatewayz",
        "aliases": list(e.aliases),
        "pricing": pricing,
        "mode": e.mode,
        "context_length": e.context_length,
        "max_output_tokens": e.max_output_tokens,
        "providers": [r.provider for r in e.routes],
    }


@router.get("/v1/models")
async def list_models(c: ContainerDep) -> dict[str, Any]:
    return {"object": "list", "data": [model_json(e) for e in c.catalog.entries]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, c: ContainerDep) -> dict[str, Any]:
    return model_json(c.catalog.resolve(model_id))
