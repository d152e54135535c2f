"""POST /v1/messages (Anthropic's Messages API) and /v1/messages/count_tokens, served by any provider: the
request is translated to the OpenAI format the pipeline routes, answers and streams are translated back,
errors use Anthropic's error body. Billing uses the upstream's token counts, as for chat completions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gatewayz.api.asgi import Receive, Scope, Send, read_body, send_bytes
from gatewayz.api.inference import Headers, InferenceEndpoint
from gatewayz.billing.money import nanos_to_json
from gatewayz.errors import GatewayError, InvalidRequest, UpstreamResponse
from gatewayz.pipeline.authenticate import authenticate
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.pipeline.parse import check_chat, load_json
from gatewayz.providers.anthropic.translate import (
    StreamTranslator,
    TranslationError,
    count_tokens_estimate,
    error_body,
    messages_to_openai,
    openai_to_message,
    sse,
)
from gatewayz.providers.anthropic.upstream import native_count

if TYPE_CHECKING:
    from gatewayz.container import Container


def _anthropic_error(status: int, message: str) -> bytes:
    return orjson.dumps(error_body(status, message))


def _translate(body: dict[str, Any]) -> dict[str, Any]:
    try:
        return messages_to_openai(body)
    except TranslationError as exc:
        raise InvalidRequest(str(exc), param=exc.param, code="invalid_request") from None


class AnthropicMessages:
    endpoint = "messages"
    anonymous = False

    def parse(self, ctx: RequestContext) -> None:
        check_chat(ctx, _translate(load_json(ctx.raw)))

    def error(self, exc: GatewayError) -> tuple[int, bytes, Headers]:
        return exc.status, _anthropic_error(exc.status, exc.message), [
            (k.encode(), v.encode()) for k, v in exc.headers.items()]

    def client_error(self, r: UpstreamResponse) -> tuple[int, bytes, bytes]:
        message = "The upstream provider refused the request."
        try:
            detail = orjson.loads(r.body).get("error", {}).get("message")
            if isinstance(detail, str):
                message = detail
        except (orjson.JSONDecodeError, AttributeError):
            pass  # not JSON: the generic message stands
        return r.status, _anthropic_error(r.status, message), b"application/json"

    def body(self, ctx: RequestContext, data: dict[str, Any], usage: Usage, cost: int) -> bytes:
        message = openai_to_message(data, ctx.entry.id if ctx.entry else ctx.requested_model)
        if usage.estimated:  # the upstream reported none: say what was billed, as the stream does
            message["usage"].update(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
        message["usage"]["cost"] = nanos_to_json(cost)  # extra field, like OpenRouter's: SDKs keep extras
        return orjson.dumps(message)

    def stream(self, ctx: RequestContext) -> _MessagesStream:
        return _MessagesStream(ctx.entry.id if ctx.entry else ctx.requested_model)


class _MessagesStream:
    __slots__ = ("translator",)

    def __init__(self, model: str) -> None:
        self.translator = StreamTranslator(model)

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        return b"".join(sse(name, data) for chunk in chunks for name, data in self.translator.feed(chunk))

    def end(self, usage_raw: dict[str, Any] | None, usage: Usage, cost: int) -> bytes:
        self.translator.usage = (usage.prompt_tokens, usage.completion_tokens)  # what was billed
        return b"".join(sse(name, data) for name, data in self.translator.finish())

    def fail(self, message: str) -> bytes:
        return b"".join(sse(name, data) for name, data in self.translator.error(message))


def Messages(container: Container) -> InferenceEndpoint:  # noqa: N802 - reads as the endpoint it builds
    return InferenceEndpoint(container, AnthropicMessages())


class CountTokens:
    """POST /v1/messages/count_tokens: Anthropic's own count when the model is first served by an Anthropic
    upstream, else an estimate of a Messages request's input tokens (no upstream call)."""

    def __init__(self, container: Container) -> None:
        self.c = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext(request_id=scope["gw.request_id"], client_request_id=False, endpoint="count_tokens")
        try:
            ctx.raw = await read_body(receive, self.c.settings.max_body_bytes)
            await authenticate(ctx, dict(scope["headers"]), self.c.keys, self.c.proxies.client_ip(scope),
                               self.c.allowlist)
            body = load_json(ctx.raw)
            probe = dict(body)
            probe.setdefault("max_tokens", 1)  # count_tokens takes no max_tokens; validate the rest
            _translate(probe)
        except GatewayError as exc:
            await send_bytes(send, exc.status, _anthropic_error(exc.status, exc.message))
            return
        tokens = await native_count(self.c, body, ctx.principal.restrictions if ctx.principal else None)
        await send_bytes(send, 200, orjson.dumps({"input_tokens": count_tokens_estimate(body) if tokens is None
                                                  else tokens}))
