"""Stage: send the request to its candidates in order until one answers.

Fails over on connection errors, timeouts, 401/402/403/404/408, 429 (after one retry on the same provider
when it asks to wait only briefly) and 5xx. A client error such as 400 goes back unchanged, with no
failover. A provider is never tried twice for one request (bar that one 429 retry). Each outcome feeds
the circuit breakers."""

from __future__ import annotations

import time

from gatewayz.errors import (
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    UpstreamFailed,
    UpstreamResponse,
    UpstreamTimeout,
)
from gatewayz.pipeline.context import Attempt, RequestContext
from gatewayz.providers.adapter import Adapter, MediaAdapter
from gatewayz.providers.engine import (
    AttemptFailed,
    ClientError,
    Engine,
    JsonReply,
    RawReply,
    StreamReply,
    sleep_within,
)
from gatewayz.routing.breaker_store import MemoryBreakers

Reply = JsonReply | StreamReply | RawReply


class Dispatcher:
    def __init__(self, engine: Engine, adapters: dict[str, Adapter], breakers: MemoryBreakers,
                 max_429_wait_s: float) -> None:
        self._engine = engine
        self._adapters = adapters
        self._breakers = breakers
        self._max_429_wait = max_429_wait_s

    async def _send(self, ctx: RequestContext, adapter: Adapter, upstream_model: str,
                    remaining: float) -> Reply | ClientError:
        if ctx.operation is None:
            out = await adapter.request(ctx.body, upstream_model, ctx.stream)
            return await self._engine.chat(adapter, out, ctx.stream, remaining)
        if not hasattr(adapter, "operation"):
            raise AttemptFailed("unsupported")  # this wire serves chat only: the next provider may serve it
        media: MediaAdapter = adapter  # type: ignore[assignment]
        out = await media.operation(ctx.operation, None if ctx.form else ctx.body, ctx.form, upstream_model)
        return await self._engine.call(adapter, out, remaining)

    async def _attempt(self, ctx: RequestContext, adapter: Adapter, upstream_model: str,
                       remaining: float) -> Reply | ClientError | AttemptFailed:
        """One attempt, recorded in ctx.attempts; a failure is returned, not raised."""
        name = adapter.spec.name
        t0 = time.perf_counter()
        try:
            # AttemptFailed also when credentials could not be refreshed or the input is not supported
            reply = await self._send(ctx, adapter, upstream_model, remaining)
        except AttemptFailed as exc:
            elapsed = time.perf_counter() - t0
            ctx.upstream_s += elapsed
            ctx.attempts.append(Attempt(name, exc.status, exc.kind, elapsed * 1000))
            return exc
        elapsed = time.perf_counter() - t0
        ctx.upstream_s += elapsed
        if isinstance(reply, ClientError):
            ctx.attempts.append(Attempt(name, reply.status, f"http_{reply.status}", elapsed * 1000))
        else:
            ctx.attempts.append(Attempt(name, 200, "ok", elapsed * 1000))
        return reply

    async def __call__(self, ctx: RequestContext, deadline: float) -> Reply:
        retry_hint: float | None = None
        tried: set[tuple[str, str]] = set()
        for cand in ctx.candidates:
            route = cand.route
            if (route.provider, route.upstream_model) in tried:
                continue
            tried.add((route.provider, route.upstream_model))
            if not self._breakers.acquire(route.provider, route.upstream_model):
                continue  # opened meanwhile, or a half-open trial is already in flight
            adapter = self._adapters[route.provider]
            spec = adapter.spec
            for attempt_no in (1, 2):
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    ctx.attempts.append(Attempt(spec.name, None, "deadline", 0.0))
                    raise _exhausted(ctx, retry_hint)
                with ctx.trace.attempt(ctx, spec.name, route.upstream_model, attempt_no > 1):
                    outcome = await self._attempt(ctx, adapter, route.upstream_model, remaining)
                if isinstance(outcome, AttemptFailed):
                    if outcome.kind == "unsupported":
                        break  # says nothing about the provider's health
                    if outcome.status == 429:
                        wait = outcome.retry_after_s
                        retry_hint = wait if retry_hint is None or (wait or 0) < retry_hint else retry_hint
                        if attempt_no == 1 and wait is not None and wait <= self._max_429_wait \
                                and await sleep_within(wait, deadline):
                            continue
                    else:
                        self._breakers.report(spec.name, route.upstream_model, "failure",
                                              model_only=outcome.status == 404)
                    break
                if isinstance(outcome, ClientError):
                    ctx.provider = spec.name
                    raise UpstreamResponse(outcome.status, outcome.body, outcome.content_type,
                                           {"x-gateway-provider": spec.name})
                self._breakers.report(spec.name, route.upstream_model, "success")
                ctx.entry, ctx.route = cand.entry, route
                ctx.provider, ctx.upstream_model = spec.name, route.upstream_model
                return outcome
        raise _exhausted(ctx, retry_hint)


def _exhausted(ctx: RequestContext, retry_hint: float | None) -> Exception:
    model = ctx.entry.id if ctx.entry else ctx.requested_model
    if not ctx.attempts:
        return ServiceUnavailable(f"Every provider of {model} is failing right now; retry shortly.",
                                  code="providers_unavailable", headers={"retry-after": "1"})
    tried = "; ".join(f"{a.provider}: {_describe(a)}" for a in ctx.attempts) or "no provider was available"
    extra = {"attempts": [{"provider": a.provider, "status": a.status, "error": a.error} for a in ctx.attempts]}
    kinds = {a.error for a in ctx.attempts}
    if kinds == {"unsupported"}:
        return InvalidRequest(f"No provider of {model} serves this endpoint.", param="model",
                              code="unsupported_operation")
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
            "stream_error": "error event", "deadline": "request deadline reached",
            "unsupported": "does not serve this endpoint",
            "auth": "credentials could not be refreshed"}.get(a.error, a.error)
