"""POST /v1/completions: OpenAI's legacy completions, served by any chat provider. The prompt becomes one user
message (gatewayz.providers.completions.translate says what is translated and refused); answers and streams
come back as text_completion objects with the cost in `usage`; errors keep OpenAI's error body."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gatewayz.api.chat import OpenAIChat, usage_dict
from gatewayz.api.inference import InferenceEndpoint
from gatewayz.billing.money import nanos_to_json
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.pipeline.parse import check_chat, load_json
from gatewayz.providers.completions.translate import CompletionChunks, chat_to_completion, completions_to_chat
from gatewayz.providers.sse import DONE_EVENT, json_event

if TYPE_CHECKING:
    from gatewayz.container import Container


def _model(ctx: RequestContext) -> str:
    return ctx.entry.id if ctx.entry else ctx.requested_model


def _usage(usage_raw: Any, usage: Usage, cost: int) -> dict[str, Any]:
    reported = dict(usage_raw) if isinstance(usage_raw, dict) else usage_dict(usage)
    reported["cost"] = nanos_to_json(cost)
    return reported


class LegacyCompletions:
    endpoint = "completions"
    error = OpenAIChat.error  # OpenAI's error body, as for chat completions
    client_error = OpenAIChat.client_error

    def parse(self, ctx: RequestContext) -> None:
        chat, ctx.echo = completions_to_chat(load_json(ctx.raw))
        check_chat(ctx, chat)

    def body(self, ctx: RequestContext, data: dict[str, Any], usage: Usage, cost: int) -> bytes:
        completion = chat_to_completion(data, _model(ctx), ctx.echo)
        completion["usage"] = _usage(data.get("usage"), usage, cost)
        return orjson.dumps(completion)

    def stream(self, ctx: RequestContext) -> _CompletionStream:
        return _CompletionStream(ctx)


class _CompletionStream:
    __slots__ = ("ctx", "chunks_out")

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.chunks_out = CompletionChunks(_model(ctx), ctx.echo)

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        out = (self.chunks_out.convert(chunk) for chunk in chunks)
        return b"".join(json_event(c) for c in out if c is not None)

    def end(self, usage_raw: dict[str, Any] | None, usage: Usage, cost: int) -> bytes:
        tail = b""
        if self.ctx.include_usage:
            tail = json_event({**self.chunks_out.head(), "choices": [], "usage": _usage(usage_raw, usage, cost)})
        return tail + DONE_EVENT

    def fail(self, message: str) -> bytes:
        return json_event({"error": {"message": message, "type": "upstream_error", "param": None,
                                     "code": "upstream_stream_interrupted"}})


def Completions(container: Container) -> InferenceEndpoint:  # noqa: N802 - reads as the endpoint it builds
    return InferenceEndpoint(container, LegacyCompletions())
