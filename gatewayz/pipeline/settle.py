"""Stages after the upstream: read its usage, settle the exact cost against the hold, record the request."""

from __future__ import annotations

import time
from typing import Any

from gatewayz.billing.credits import CreditAuthority
from gatewayz.billing.money import media_cost_nanos, token_cost_nanos
from gatewayz.billing.store import Settlement
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.routing.stats import ProviderStats


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_openai(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    details_in = u.get("prompt_tokens_details") or {}
    details_out = u.get("completion_tokens_details") or {}
    return Usage(prompt_tokens=_int(u.get("prompt_tokens")), completion_tokens=_int(u.get("completion_tokens")),
                 cached_tokens=_int(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
                 reasoning_tokens=_int(details_out.get("reasoning_tokens")) if isinstance(details_out, dict) else 0)


def estimate_usage(ctx: RequestContext, delivered_chars: int) -> Usage:
    """A stream cut before the upstream reported usage: bill what was delivered, about 4 characters a token."""
    return Usage(prompt_tokens=-(-len(ctx.raw) // 4), completion_tokens=-(-delivered_chars // 4), estimated=True)


def finish(ctx: RequestContext, authority: CreditAuthority, stats: ProviderStats) -> int:
    """Settle, then record what the providers did; returns the nanos charged."""
    cost = settle(ctx, authority)
    if not ctx.observed:
        ctx.observed = True
        observe(ctx, stats)
    return cost


def settle(ctx: RequestContext, authority: CreditAuthority) -> int:
    """Charge for ctx.usage (nothing when it is None) and queue the usage record. Idempotent per context."""
    if ctx.settled or ctx.hold is None or ctx.entry is None or ctx.principal is None:
        return ctx.cost_nanos
    ctx.settled = True
    with ctx.trace.stage("settle", ctx):
        ctx.cost_nanos = authority.settle(ctx.hold, _settlement(ctx))
    if ctx.daily is not None:
        ctx.daily.settle(ctx.cost_nanos)  # the daily caps count what was charged, no longer the hold
    return ctx.cost_nanos


def _settlement(ctx: RequestContext) -> Settlement:
    assert ctx.hold is not None and ctx.entry is not None
    # No usage means nothing was delivered (the request failed): nothing to pay.
    usage = ctx.usage or Usage()
    entry = ctx.entry
    cost = 0
    if ctx.usage is not None:
        price_in, price_out = (ctx.route.input_picos, ctx.route.output_picos) if ctx.route else \
            (entry.input_picos, entry.output_picos)
        cost = token_cost_nanos(usage.prompt_tokens, usage.completion_tokens, price_in, price_out)
        units = ctx.route.units if ctx.route else None
        if units is not None:
            cost += media_cost_nanos(usage.images, usage.audio_ms, usage.characters, units.image_nanos,
                                     units.minute_nanos, units.character_picos)
    return Settlement(user_id=ctx.hold.user_id, request_id=ctx.request_id, cost_nanos=cost, model=entry.id,
                      prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                      usage=usage_row(ctx, usage))


def usage_row(ctx: RequestContext, usage: Usage) -> dict[str, Any]:
    assert ctx.principal is not None and ctx.entry is not None
    return {"api_key_id": ctx.principal.key_id, "endpoint": ctx.endpoint, "model": ctx.entry.id,
            "provider": ctx.provider, "upstream_model": ctx.upstream_model, "stream": ctx.stream,
            "status": ctx.status, "error_code": ctx.error_code, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cached_tokens": usage.cached_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "latency_ms": round((time.perf_counter() - ctx.started) * 1000, 3), "ttft_ms": ctx.ttft_ms,
            "attempts": len(ctx.attempts),
            # Media units billed (NULL when the request has none, as every chat request)
            "images": usage.images or None, "audio_ms": usage.audio_ms or None,
            "characters": usage.characters or None}


def _provider_fault(status: int | None, error: str) -> bool:
    """A failure that says something about the provider (not the client's request, not a rate limit)."""
    if error == "unsupported":
        return False
    return status is None or status >= 500 or status in (401, 402, 403, 404, 408) or (status == 200 and error != "ok")


def observe(ctx: RequestContext, stats: ProviderStats) -> None:
    """Passive health: every attempt of this request feeds the provider statistics (after the response)."""
    if ctx.entry is not None and ctx.attempts:
        served = any(a.error == "ok" for a in ctx.attempts)
        primary = ctx.candidates[0].entry if ctx.candidates else ctx.entry
        if primary is not ctx.entry:
            stats.uptime.record("model:" + primary.id, False)  # every provider of the first model failed
        stats.uptime.record("model:" + ctx.entry.id, served)
    models = {c.route.provider: c.route.upstream_model for c in reversed(ctx.candidates)}
    for a in ctx.attempts:
        model = models.get(a.provider, "")
        if a.error == "ok":
            model = ctx.upstream_model or model
            usage = ctx.usage
            stats.record(a.provider, model, ok=ctx.status == 200,
                         latency_ms=(time.perf_counter() - ctx.started) * 1000 if ctx.stream else a.elapsed_ms,
                         ttft_ms=ctx.ttft_ms if ctx.stream else None,
                         completion_tokens=usage.completion_tokens if usage else 0)
        elif _provider_fault(a.status, a.error):
            stats.record(a.provider, model, ok=False, latency_ms=a.elapsed_ms)
