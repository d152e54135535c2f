"""POST /v1/completions: OpenAI's legacy completions, served by any chat provider. The prompt becomes one user
message (gatewayz.providers.completions.translate says what is translated and refused); answers and streams
come back as text_completion objects with the cost in `usage`; errors keep OpenAI's error body."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gatewayz.api.chat import OpenAIErrors, reported_usage, served_model, stream_failure
from gatewayz.api.inference import InferenceEndpoint
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.pipeline.parse import check_chat, load_json
from gatewayz.providers.completions.translate import CompletionChunks, chat_to_completion, completions_to_chat
from gatewayz.providers.sse import DONE_EVENT, json_event

if TYPE_CHECKING:
    from gatewayz.container import Container


class LegacyCompletions(OpenAIErrors):
    endpoint = "completions"

    def parse(self, ctx: RequestContext) -> None:
        chat, ctx.echo = completions_to_chat(load_json(ctx.raw))
        check_chat(ctx, chat)

    def body(self, ctx: RequestContext, data: dict[str, Any], usage: Usage, cost: int) -> bytes:
        completion = chat_to_completion(data, served_model(ctx), ctx.echo)
        completion["usage"] = reported_usage(data.get("usage"), usage, cost)
        return orjson.dumps(completion)

    def stream(self, ctx: RequestContext) -> _CompletionStream:
        return _CompletionStream(ctx)


class _CompletionStream:
    __slots__ = ("ctx", "chunks_out")

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.chunks_out = CompletionChunks(served_model(ctx), ctx.echo)

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        out = (self.chunks_out.convert(chunk) for chunk in chunks)
        return b"".join(json_event(c) for c in out if c is not None)

    def end(self, usage_raw: dict[str, Any] | None, usage: Usage, cost: int) -> bytes:
        if not self.ctx.include_usage:
            return DONE_EVENT
        usage_chunk = {**self.chunks_out.head(), "choices": [], "usage": reported_usage(usage_raw, usage, cost)}
        return json_event(usage_chunk) + DONE_EVENT

    def fail(self, message: str) -> bytes:
        return stream_failure(message)


def Completions(container: Container) -> InferenceEndpoint:  # noqa: N802 - reads as the endpoint it builds
    return InferenceEndpoint(container, LegacyCompletions())
