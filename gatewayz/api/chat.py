"""POST /v1/chat/completions: the OpenAI dialect of the inference endpoint (the upstream format, so answers
pass through with the canonical model id and the cost added)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from gatewayz.api.inference import Headers, InferenceEndpoint
from gatewayz.billing.money import nanos_to_json
from gatewayz.errors import GatewayError, UpstreamResponse
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.pipeline.parse import parse_chat
from gatewayz.providers.sse import DONE_EVENT, json_event

if TYPE_CHECKING:
    from gatewayz.container import Container


def usage_dict(u: Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def reported_usage(usage_raw: Any, usage: Usage, cost: int) -> dict[str, Any]:
    """The usage a client sees: the upstream's own report when there is one (else what was billed), with the cost."""
    reported = dict(usage_raw) if usage_raw and isinstance(usage_raw, dict) else usage_dict(usage)
    reported["cost"] = nanos_to_json(cost)
    return reported


def served_model(ctx: RequestContext) -> str:
    """The canonical id of the model that served (the name asked for, until one did)."""
    return ctx.entry.id if ctx.entry else ctx.requested_model


def stream_failure(message: str) -> bytes:
    """The last event of an OpenAI-format stream the upstream broke off (the SDKs raise on it)."""
    return json_event({"error": {"message": message, "type": "upstream_error", "param": None,
                                 "code": "upstream_stream_interrupted"}})


class OpenAIErrors:
    """Errors in OpenAI's shape: chat completions' and the OpenAI APIs translated to it (responses, completions)."""

    anonymous = False  # layer 3 (anonymous free models) is chat completions only

    def error(self, exc: GatewayError) -> tuple[int, bytes, Headers]:
        return exc.status, exc.body_bytes(), [(k.encode(), v.encode()) for k, v in exc.headers.items()]

    def client_error(self, r: UpstreamResponse) -> tuple[int, bytes, bytes]:
        return r.status, r.body, r.content_type.encode()  # the upstream's own OpenAI error, unchanged


class OpenAIChat(OpenAIErrors):
    endpoint = "chat.completions"
    anonymous = True

    def parse(self, ctx: RequestContext) -> None:
        parse_chat(ctx)

    def body(self, ctx: RequestContext, data: dict[str, Any], usage: Usage, cost: int) -> bytes:
        data["model"] = served_model(ctx)
        data["usage"] = reported_usage(data.get("usage"), usage, cost)
        return orjson.dumps(data)

    def stream(self, ctx: RequestContext) -> _ChatStream:
        return _ChatStream(ctx)


class _ChatStream:
    """Rewrites upstream chunks for the client: canonical model id, usage only when asked, cost added."""

    __slots__ = ("ctx", "model", "chunk_id", "created")

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.model = ctx.entry.id if ctx.entry else ""
        self.chunk_id: str | None = None
        self.created: int | None = None

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        if not chunks:
            return b""
        parts = []
        for obj in chunks:
            if self.chunk_id is None and obj.get("choices"):
                self.chunk_id, self.created = obj.get("id"), obj.get("created")
            obj["model"] = self.model
            if "usage" in obj and not self.ctx.include_usage:
                del obj["usage"]
            parts.append(b"data: " + orjson.dumps(obj) + b"\n\n")
        return b"".join(parts)

    def end(self, usage_raw: dict[str, Any] | None, usage: Usage, cost: int) -> bytes:
        tail = b""
        if self.ctx.include_usage:
            tail = json_event({"id": self.chunk_id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": [], "usage": reported_usage(usage_raw, usage, cost)})
        return tail + DONE_EVENT

    def fail(self, message: str) -> bytes:
        return stream_failure(message)


def ChatCompletions(container: Container) -> InferenceEndpoint:  # noqa: N802 - reads as the endpoint it builds
    return InferenceEndpoint(container, OpenAIChat())
