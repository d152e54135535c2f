"""The inference endpoint: the stages of gatewayz.pipeline run top to bottom as a raw ASGI app, for any client
dialect (OpenAI chat completions, Anthropic messages). The dialect parses the client's body into the
OpenAI-format request the pipeline routes, and renders answers, streams and errors back in its own shape."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson

from gatewayz.api.asgi import Receive, Scope, Send, read_body, send_bytes
from gatewayz.billing.money import nanos_to_usd
from gatewayz.error_monitor.events import upstream_message
from gatewayz.errors import AuthenticationFailed, GatewayError, RateLimited, UpstreamResponse
from gatewayz.observability.logging import log_request_content
from gatewayz.observability.tracing import trace_of
from gatewayz.pipeline.authenticate import authenticate
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.pipeline.limit import complete_refusal, success_headers
from gatewayz.pipeline.plan import plan
from gatewayz.pipeline.reserve import reserve
from gatewayz.pipeline.settle import estimate_usage, finish, settle, usage_from_openai
from gatewayz.providers.engine import JsonReply, StreamReply
from gatewayz.providers.sse import DONE

if TYPE_CHECKING:
    from gatewayz.container import Container

log = logging.getLogger("gatewayz.inference")
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
Headers = list[tuple[bytes, bytes]]


class StreamRenderer(Protocol):
    def chunks(self, chunks: list[dict[str, Any]]) -> bytes: ...
    def end(self, usage_raw: dict[str, Any] | None, usage: Usage, cost: int) -> bytes: ...
    def fail(self, message: str) -> bytes: ...


class Dialect(Protocol):
    endpoint: str
    anonymous: bool  # may serve layer 3 (anonymous) requests for the free models

    def parse(self, ctx: RequestContext) -> None: ...
    def error(self, exc: GatewayError) -> tuple[int, bytes, Headers]: ...
    def client_error(self, r: UpstreamResponse) -> tuple[int, bytes, bytes]: ...
    def body(self, ctx: RequestContext, data: dict[str, Any], usage: Usage, cost: int) -> bytes: ...
    def stream(self, ctx: RequestContext) -> StreamRenderer: ...


def meta_headers(ctx: RequestContext, low_balance_nanos: int) -> Headers:
    headers = [(b"x-gateway-provider", (ctx.provider or "").encode()),
               (b"x-gateway-overhead-ms", f"{ctx.overhead_ms():.3f}".encode())]
    if ctx.rate is not None:
        headers += success_headers(ctx.rate)
    if ctx.hold is not None and ctx.hold.remaining < low_balance_nanos:
        # Running low: say how much is left (USD, after this request's hold) so clients can top up in time.
        headers.append((b"x-credits-remaining", f"{nanos_to_usd(max(ctx.hold.remaining, 0)):.6f}".encode()))
    return headers


def record_done(ctx: RequestContext, c: Container) -> None:
    """Metrics and the trace's summary of a finished request (chat and media endpoints alike)."""
    ctx.trace.done(ctx)
    c.metrics.in_flight(ctx.endpoint, -1)
    c.metrics.request_done(ctx, ctx.trace.trace_id)
    c.error_monitor.observe(ctx)
    if ctx.hold is not None:
        c.metrics.credits("reserved", ctx.hold.amount)
        c.metrics.credits("settled", ctx.cost_nanos)
        c.metrics.credits("refunded", ctx.hold.amount - ctx.cost_nanos)


class InferenceEndpoint:
    def __init__(self, container: Container, dialect: Dialect) -> None:
        self.c = container
        self.dialect = dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        c = self.c
        ctx = RequestContext(request_id=scope["gw.request_id"], client_request_id=scope["gw.client_request_id"],
                             endpoint=self.dialect.endpoint, trace=trace_of(scope))
        c.metrics.in_flight(ctx.endpoint, 1)
        try:
            await self._serve(ctx, scope, receive, send)
        finally:
            if ctx.hold is not None and not ctx.settled:
                # Only an unexpected error gets here: release the hold rather than keep the money blocked.
                ctx.status, ctx.usage = 500, None
                settle(ctx, c.credits)
            record_done(ctx, c)

    async def _serve(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        c, d = self.c, self.dialect
        try:
            ctx.raw = await read_body(receive, c.settings.max_body_bytes)
            ip = c.proxies.client_ip(scope)
            with ctx.trace.stage("authenticate", ctx):
                try:
                    await authenticate(ctx, dict(scope["headers"]), c.keys, ip, c.allowlist)
                except AuthenticationFailed as exc:
                    if not self._anonymous(ctx, exc):
                        await c.limits.unauthenticated(ip)
                        raise
                else:
                    d.parse(ctx)
            if c.settings.log_prompts:
                log_request_content(log, ctx.request_id, ctx.requested_model, ctx.body)
            with ctx.trace.stage("rate_limits", ctx):
                ctx.rate = await c.limits.check(ctx)
            with ctx.trace.stage("plan", ctx):
                plan(ctx, c, scope)
            with ctx.trace.stage("reserve", ctx):
                await reserve(ctx, c.credits, c.ledger, c.plans)
            try:
                reply = await c.dispatch(ctx, ctx.started + c.settings.request_deadline_s)
            except (GatewayError, UpstreamResponse) as exc:
                ctx.status, ctx.error_code = exc.status, getattr(exc, "code", None) or "upstream_client_error"
                finish(ctx, c.credits, c.provider_stats)  # releases the hold: a failed request costs nothing
                await c.limits.correct(ctx, ctx.rate)
                raise
        except GatewayError as exc:
            ctx.status, ctx.error_code, ctx.error_message = exc.status, exc.code, exc.message
            if isinstance(exc, RateLimited):
                c.metrics.rate_limited(str(exc.extra.get("reason", "upstream")))
                complete_refusal(exc, ctx.rate, c.limits.velocity.mode)
            status, body, headers = d.error(exc)
            await send_bytes(send, status, body, headers=headers)
            return
        except UpstreamResponse as r:
            ctx.status, ctx.error_message = r.status, upstream_message(r.body)
            status, body, ctype = d.client_error(r)
            await send_bytes(send, status, body, ctype, [(k.encode(), v.encode()) for k, v in r.headers.items()])
            return
        if isinstance(reply, JsonReply):
            await self._json(ctx, reply.data, send)
        elif isinstance(reply, StreamReply):
            await self._stream(ctx, reply, send)
        else:
            raise TypeError("a chat request got a non-chat reply")

    def _anonymous(self, ctx: RequestContext, exc: AuthenticationFailed) -> bool:
        """Layer 3: a request with no credential at all, for a listed free model, is served anonymously. A body
        that does not parse stays a 401 (the missing credential is the first thing wrong with it)."""
        anonymous = self.c.anonymous
        if not (anonymous.enabled and self.dialect.anonymous and exc.code == "missing_api_key"):
            return False
        try:
            self.dialect.parse(ctx)
        except GatewayError:
            return False
        if not anonymous.admit(ctx):
            return False
        self.c.allowlist.check(None, ctx.client_ip)
        return True

    async def _json(self, ctx: RequestContext, data: dict[str, Any], send: Send) -> None:
        usage = usage_from_openai(data.get("usage"))
        if usage is None:
            usage = estimate_usage(ctx, content_chars(data))
            log.warning("provider %s sent no usage for %s; billing an estimate", ctx.provider, ctx.request_id)
        ctx.usage = usage
        cost = settle(ctx, self.c.credits)
        body = self.dialect.body(ctx, data, usage, cost)
        await send_bytes(send, 200, body, b"application/json", meta_headers(ctx, self.c.low_balance_nanos))
        finish(ctx, self.c.credits, self.c.provider_stats)  # health capture once the client has its answer
        await self.c.limits.correct(ctx, ctx.rate)

    async def _stream(self, ctx: RequestContext, reply: StreamReply, send: Send) -> None:
        resp, decoder = reply.response, reply.decoder
        headers = SSE_HEADERS + meta_headers(ctx, self.c.low_balance_nanos)
        tracker = StreamTracker(ctx, self.c)
        renderer = self.dialect.stream(ctx)
        events = reply.first
        failure: str | None = None
        ended = False
        try:
            with ctx.trace.stage("stream", ctx) as span:
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                ctx.ttft_ms = (time.perf_counter() - ctx.started) * 1000
                span.event("first_token", {"gatewayz.ttft_ms": round(ctx.ttft_ms, 3)})
                while True:
                    out = renderer.chunks(tracker.parse(events))
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                    if tracker.done or ended:
                        break
                    t0 = time.perf_counter()
                    try:
                        chunk = await resp.content.readany()
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        failure = type(exc).__name__
                        break
                    finally:
                        ctx.upstream_s += time.perf_counter() - t0
                    ended = not chunk  # feed(b"") lets a wire without a terminal event complete (StreamDecoder)
                    events = decoder.feed(chunk)
                if tracker.upstream_error is not None:
                    failure = "error_event"
                if failure is not None:
                    span.fail(failure)
        finally:
            resp.release()
            tail = tracker.finish(failure, renderer)
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            await self.c.limits.correct(ctx, ctx.rate)


class StreamTracker:
    """Reads the upstream's OpenAI chunks: keeps usage, counts what was delivered, spots errors and junk."""

    __slots__ = ("ctx", "c", "done", "chars", "usage_raw", "upstream_error")

    def __init__(self, ctx: RequestContext, container: Container) -> None:
        self.ctx, self.c = ctx, container
        self.done = False
        self.chars = 0
        self.usage_raw: dict[str, Any] | None = None
        self.upstream_error: Any = None

    def parse(self, events: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for data in events:
            if data == DONE:
                self.done = True
                break
            if isinstance(data, dict):
                obj = data
            else:
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    obj = None
            if not isinstance(obj, dict):
                # Never dropped silently: logged with the provider and counted.
                self.c.metrics.stream_chunk_problem(self.ctx.provider or "none", "malformed")
                log.warning("provider %s sent an unreadable stream chunk: %.200r", self.ctx.provider, data)
                continue
            if "error" in obj and not obj.get("choices"):
                self.upstream_error = obj.get("error")
                self.done = True
                break
            usage = obj.get("usage")
            if usage is not None and isinstance(usage, dict):
                self.usage_raw = usage
            choices = obj.get("choices")
            if not choices:
                if usage is not None:
                    continue  # the usage-only chunk: each dialect reports usage its own way at the end
            else:
                self.chars += _delivered(choices)
            out.append(obj)
        return out

    def finish(self, failure: str | None, renderer: StreamRenderer) -> bytes:
        """Settle (exact usage, or an estimate of what was delivered) and close the client's stream."""
        ctx = self.ctx
        if failure is None and not self.done:
            failure = "truncated"
        if failure is None:
            usage = usage_from_openai(self.usage_raw) if self.usage_raw else None
            if usage is None:
                usage = estimate_usage(ctx, self.chars)
                log.warning("provider %s streamed no usage for %s; billing an estimate", ctx.provider, ctx.request_id)
            ctx.usage = usage
            cost = finish(ctx, self.c.credits, self.c.provider_stats)
            return renderer.end(None if usage.estimated else self.usage_raw, usage, cost)
        self.c.metrics.stream_chunk_problem(ctx.provider or "none", "interrupted")
        log.warning("stream from %s for %s ended early (%s)", ctx.provider, ctx.request_id, failure)
        ctx.usage = estimate_usage(ctx, self.chars)
        ctx.error_code = "upstream_stream_interrupted"
        ctx.status = 502
        finish(ctx, self.c.credits, self.c.provider_stats)
        message = "The upstream provider's stream ended before completion."
        if failure == "error_event" and isinstance(self.upstream_error, dict):
            detail = str(self.upstream_error.get("message", ""))[:400]
            message = f"The upstream provider reported an error mid-stream: {detail}"
        ctx.error_message = message
        return renderer.fail(message)


def _delivered(choices: Any) -> int:
    """Characters of text and tool arguments in one chunk's deltas (for billing a stream cut midway)."""
    n = 0
    try:
        for ch in choices:
            delta = ch["delta"]
            content = delta.get("content")
            if content:
                n += len(content)
            calls = delta.get("tool_calls")
            if calls:
                for tc in calls:
                    args = (tc.get("function") or {}).get("arguments")
                    if args:
                        n += len(args)
    except (KeyError, TypeError, AttributeError):
        pass  # an odd chunk still goes to the client; it just adds nothing to the estimate
    return n


def content_chars(data: dict[str, Any]) -> int:
    total = 0
    for ch in data.get("choices") or ():
        msg = ch.get("message") if isinstance(ch, dict) else None
        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
            total += len(msg["content"])
    return total
