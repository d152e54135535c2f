"""POST /v1/chat/completions: the stages of gatewayz.pipeline, run top to bottom, as a raw ASGI endpoint."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gatewayz.api.asgi import JSON, Receive, Scope, Send, read_body, send_bytes, send_error
from gatewayz.billing.money import nanos_to_json, nanos_to_usd
from gatewayz.errors import GatewayError, UpstreamResponse
from gatewayz.pipeline.authenticate import authenticate
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.pipeline.parse import parse_chat
from gatewayz.pipeline.plan import plan
from gatewayz.pipeline.reserve import reserve
from gatewayz.pipeline.settle import estimate_usage, finish, settle, usage_from_openai
from gatewayz.providers.engine import JsonReply, StreamReply
from gatewayz.providers.sse import DONE, DONE_EVENT, json_event

if TYPE_CHECKING:
    from gatewayz.container import Container

log = logging.getLogger("gatewayz.chat")
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def _meta_headers(ctx: RequestContext, low_balance_nanos: int) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-gateway-provider", (ctx.provider or "").encode()),
               (b"x-gateway-overhead-ms", f"{ctx.overhead_ms():.3f}".encode())]
    if ctx.hold is not None and ctx.hold.remaining < low_balance_nanos:
        # Running low: say how much is left (USD, after this request's hold) so clients can top up in time.
        headers.append((b"x-credits-remaining", f"{nanos_to_usd(max(ctx.hold.remaining, 0)):.6f}".encode()))
    return headers


class ChatCompletions:
    def __init__(self, container: Container) -> None:
        self.c = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        c = self.c
        ctx = RequestContext(request_id=scope["gw.request_id"], client_request_id=scope["gw.client_request_id"],
                             endpoint="chat.completions")
        try:
            ctx.raw = await read_body(receive, c.settings.max_body_bytes)
            await authenticate(ctx, dict(scope["headers"]), c.keys)
            parse_chat(ctx)
            plan(ctx, c, scope)
            await reserve(ctx, c.credits, c.ledger)
            try:
                reply = await c.dispatch(ctx, ctx.started + c.settings.request_deadline_s)
            except (GatewayError, UpstreamResponse) as exc:
                ctx.status, ctx.error_code = exc.status, getattr(exc, "code", None) or "upstream_client_error"
                finish(ctx, c.credits, c.provider_stats)  # releases the hold: a failed request costs nothing
                raise
        except GatewayError as exc:
            await send_error(send, exc)
            return
        except UpstreamResponse as r:
            await send_bytes(send, r.status, r.body, r.content_type.encode(),
                             [(k.encode(), v.encode()) for k, v in r.headers.items()])
            return
        if isinstance(reply, JsonReply):
            await self._json(ctx, reply.data, send)
        else:
            await self._stream(ctx, reply, send)

    async def _json(self, ctx: RequestContext, data: dict[str, Any], send: Send) -> None:
        assert ctx.entry is not None
        usage = usage_from_openai(data.get("usage"))
        if usage is None:
            usage = estimate_usage(ctx, _content_chars(data))
            log.warning("provider %s sent no usage for %s; billing an estimate", ctx.provider, ctx.request_id)
        ctx.usage = usage
        cost = settle(ctx, self.c.credits)
        data["model"] = ctx.entry.id
        upstream_usage = data.get("usage")
        reported: dict[str, Any] = upstream_usage if isinstance(upstream_usage, dict) else _usage_dict(usage)
        reported["cost"] = nanos_to_json(cost)
        data["usage"] = reported
        await send_bytes(send, 200, orjson.dumps(data), JSON, _meta_headers(ctx, self.c.low_balance_nanos))
        finish(ctx, self.c.credits, self.c.provider_stats)  # health capture once the client has its answer

    async def _stream(self, ctx: RequestContext, reply: StreamReply, send: Send) -> None:
        entry = ctx.entry
        assert entry is not None
        resp, parser = reply.response, reply.parser
        headers = SSE_HEADERS + _meta_headers(ctx, self.c.low_balance_nanos)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        ctx.ttft_ms = (time.perf_counter() - ctx.started) * 1000
        relay = _Relay(ctx, self.c)
        events = reply.first
        failure: str | None = None
        try:
            while True:
                out = relay.translate(events)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if relay.done:
                    break
                t0 = time.perf_counter()
                try:
                    chunk = await resp.content.readany()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    failure = type(exc).__name__
                    break
                finally:
                    ctx.upstream_s += time.perf_counter() - t0
                if not chunk:
                    failure = "truncated"
                    break
                events = parser.feed(chunk)
            if relay.upstream_error is not None:
                failure = "error_event"
        finally:
            resp.release()
            tail = relay.finish(failure)
            await send({"type": "http.response.body", "body": tail, "more_body": False})


class _Relay:
    """Rewrites upstream chunks for the client: canonical model id, usage only when asked, cost added."""

    __slots__ = ("ctx", "c", "done", "chars", "usage_raw", "chunk_id", "created", "upstream_error")

    def __init__(self, ctx: RequestContext, container: Container) -> None:
        self.ctx, self.c = ctx, container
        self.done = False
        self.chars = 0
        self.usage_raw: dict[str, Any] | None = None
        self.chunk_id: str | None = None
        self.created: int | None = None
        self.upstream_error: Any = None

    def translate(self, events: list[bytes]) -> bytes:
        ctx = self.ctx
        model = ctx.entry.id if ctx.entry else ""
        parts: list[bytes] = []
        for data in events:
            if data == DONE:
                self.done = True
                break
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                self.c.stats.malformed_chunks += 1
                log.warning("provider %s sent an unreadable stream chunk: %.200r", ctx.provider, data)
                continue
            if not isinstance(obj, dict):
                self.c.stats.malformed_chunks += 1
                log.warning("provider %s sent a stream chunk that is not an object: %.200r", ctx.provider, data)
                continue
            if "error" in obj and not obj.get("choices"):
                self.upstream_error = obj.get("error")
                self.done = True
                break
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self.usage_raw = usage
            choices = obj.get("choices")
            if not choices:
                if usage is None:
                    parts.append(json_event(dict(obj, model=model)))
                continue  # the usage-only chunk: re-emitted at the end, with the cost
            if self.chunk_id is None:
                self.chunk_id, self.created = obj.get("id"), obj.get("created")
            for ch in choices:
                delta = ch.get("delta") if isinstance(ch, dict) else None
                if isinstance(delta, dict):
                    content = delta.get("content")
                    if isinstance(content, str):
                        self.chars += len(content)
                    for tc in delta.get("tool_calls") or ():
                        fn = tc.get("function") if isinstance(tc, dict) else None
                        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                            self.chars += len(fn["arguments"])
            obj["model"] = model
            if "usage" in obj and not ctx.include_usage:
                del obj["usage"]
            parts.append(b"data: " + orjson.dumps(obj) + b"\n\n")
        return b"".join(parts)

    def finish(self, failure: str | None) -> bytes:
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
            tail = b""
            if ctx.include_usage:
                reported = dict(self.usage_raw) if self.usage_raw and not usage.estimated else _usage_dict(usage)
                reported["cost"] = nanos_to_json(cost)
                tail = json_event({"id": self.chunk_id, "object": "chat.completion.chunk", "created": self.created,
                                   "model": ctx.entry.id if ctx.entry else "", "choices": [], "usage": reported})
            return tail + DONE_EVENT
        self.c.stats.interrupted_streams += 1
        log.warning("stream from %s for %s ended early (%s)", ctx.provider, ctx.request_id, failure)
        ctx.usage = estimate_usage(ctx, self.chars)
        ctx.error_code = "upstream_stream_interrupted"
        ctx.status = 502
        finish(ctx, self.c.credits, self.c.provider_stats)
        message = "The upstream provider's stream ended before completion."
        if failure == "error_event" and isinstance(self.upstream_error, dict):
            detail = str(self.upstream_error.get("message", ""))[:400]
            message = f"The upstream provider reported an error mid-stream: {detail}"
        return json_event({"error": {"message": message, "type": "upstream_error", "param": None,
                                     "code": "upstream_stream_interrupted"}})


def _usage_dict(u: Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def _content_chars(data: dict[str, Any]) -> int:
    total = 0
    for ch in data.get("choices") or ():
        msg = ch.get("message") if isinstance(ch, dict) else None
        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
            total += len(msg["content"])
    return total
