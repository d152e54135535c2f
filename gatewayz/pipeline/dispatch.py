"""Stage: send the request to the model's providers in order until one answers.

Fails over on connection errors, timeouts, 401/402/403/404/408, 429 (after one short retry when the
upstream says how long to wait) and 5xx. A client error such as 400 goes back unchanged, with no failover.
A provider is never tried twice for one request (bar that one 429 retry)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gatewayz.errors import RateLimited, UpstreamFailed, UpstreamResponse, UpstreamTimeout
from gatewayz.pipeline.context import Attempt, RequestContext
from gatewayz.providers.engine import AttemptFailed, ClientError, Engine, JsonReply, StreamReply, sleep_within
from gatewayz.providers.spec import ProviderSpec

MAX_429_WAIT_S = 2.0


def upstream_payload(body: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
    out = dict(body)
    out["model"] = upstream_model
    if stream:
        # Always ask for usage: billing needs it even when the client did not ask to see it.
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    return orjson.dumps(out)


async def dispatch(ctx: RequestContext, engine: Engine, providers: dict[str, ProviderSpec],
                   deadline: float) -> JsonReply | StreamReply:
    assert ctx.entry is not None
    retry_hint: float | None = None
    for route in ctx.entry.routes:
        spec = providers[route.provider]
        payload = upstream_payload(ctx.body, route.upstream_model, ctx.stream)
        for attempt_no in (1, 2):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                ctx.attempts.append(Attempt(spec.name, None, "deadline", 0.0))
                raise _exhausted(ctx, retry_hint)
            t0 = time.perf_counter()
            try:
                reply = await engine.chat(spec, payload, ctx.stream, remaining)
            except AttemptFailed as exc:
                ctx.upstream_s += time.perf_counter() - t0
                ctx.attempts.append(Attempt(spec.name, exc.status, exc.kind, (time.perf_counter() - t0) * 1000))
                if exc.status == 429:
                    wait = exc.retry_after_s
                    retry_hint = wait if retry_hint is None or (wait or 0) < retry_hint else retry_hint
                    if attempt_no == 1 and wait is not None and wait <= MAX_429_WAIT_S \
                            and await sleep_within(wait, deadline):
                        continue
                break
            ctx.upstream_s += time.perf_counter() - t0
            if isinstance(reply, ClientError):
                ctx.attempts.append(Attempt(spec.name, reply.status, f"http_{reply.status}",
                                            (time.perf_counter() - t0) * 1000))
                ctx.provider = spec.name
                raise UpstreamResponse(reply.status, reply.body, reply.content_type, {"x-gateway-provider": spec.name})
            ctx.attempts.append(Attempt(spec.name, 200, "ok", (time.perf_counter() - t0) * 1000))
            ctx.provider, ctx.upstream_model = spec.name, route.upstream_model
            return reply
    raise _exhausted(ctx, retry_hint)


def _exhausted(ctx: RequestContext, retry_hint: float | None) -> Exception:
    model = ctx.entry.id if ctx.entry else ctx.requested_model
    tried = "; ".join(f"{a.provider}: {_describe(a)}" for a in ctx.attempts) or "no provider was available"
    extra = {"attempts": [{"provider": a.provider, "status": a.status, "error": a.error} for a in ctx.attempts]}
    kinds = {a.error for a in ctx.attempts}
    if ctx.attempts and all(a.status == 429 for a in ctx.attempts):
        after = max(1, round(retry_hint or 1))
        return RateLimited(f"Every provider of {model} is rate limiting; retry after {after}s. Tried: {tried}.",
                           code="upstream_rate_limited", headers={"retry-after": str(after)}, extra=extra)
    if kinds and kinds <= {"timeout", "deadline"}:
        return UpstreamTimeout(f"Every provider of {model} timed out. Tried: {tried}.", extra=extra)
    return UpstreamFailed(f"Every provider of {model} failed. Tried: {tried}.", extra=extra)


def _describe(a: Attempt) -> str:
    if a.error.startswith("http_"):
        return f"HTTP {a.status}"
    return {"timeout": "timed out", "connect": "connection failed", "read": "connection lost",
            "bad_response": "invalid response", "empty_stream": "empty stream",
            "stream_error": "error event", "deadline": "request deadline reached"}.get(a.error, a.error)
