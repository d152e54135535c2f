"""Anthropic Messages wire format: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``, ``GET /v1/models``.

Auth is the ``x-api-key`` header (or a bearer token, as the 2.x Python SDK sends it); every request must
also carry ``anthropic-version`` (400 otherwise).
Errors use Anthropic's shape ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with its
error types (400 invalid_request_error, 401 authentication_error, 402 billing_error, 403 permission_error,
404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500 api_error, 529 overloaded_error).
Streams are named server-sent events (``event: message_start`` ... ``event: message_stop``, a ``ping`` after
the first block starts) with no ``[DONE]`` terminator. Answers and token accounting: ``anthropic_messages``.
Requests are validated the way the real API does where it matters to a translator: unknown top-level
fields, a ``system`` role in ``messages``, empty text blocks, unpaired tool_use / tool_result ids, tool
names and schemas, thinking budgets and the parameters thinking forbids.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .anthropic_messages import input_tokens, message_body, plan_message, stream_events, validate
from .openai_format import json_response as _json
from .wire import EventStream, Exchange, Route

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error",
}
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


class AnthropicFormat:
    """The Anthropic Messages routes."""

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/v1/messages", self.messages),
            Route("POST", "/v1/messages/count_tokens", self.count_tokens),
            Route("GET", "/v1/models", self.list_models),
        )

    def authorized(self, request: web.Request, api_key: str) -> bool:
        # x-api-key is the documented header; the official Python SDK (2.x) sends its api_key as a bearer token.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return request.headers.get("x-api-key", "") == api_key or scheme.lower() == "bearer" and token == api_key

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        # `code` (an OpenAI notion) only picks the type when it is one of Anthropic's.
        kind = code if code in ERROR_TYPES.values() or code == "api_error" else error_type(status)
        payload = {"type": "error", "error": {"type": kind, "message": message},
                   "request_id": f"req_emu{uuid.uuid4().hex[:20]}"}
        return _json(payload, status)

    def model_of(self, request: web.Request, body: Any) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    def wants_stream(self, request: web.Request, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    async def not_found(self, exchange: Exchange) -> web.StreamResponse:
        return self.error(404, "Not found")

    def _refusal(self, exchange: Exchange, count_only: bool = False) -> web.Response | None:
        if not exchange.request.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        problem = validate(exchange.body, count_only)
        return self.error(400, problem) if problem else None

    async def messages(self, exchange: Exchange) -> web.StreamResponse:
        refusal = self._refusal(exchange)
        if refusal is not None:
            return refusal
        plan = plan_message(exchange.body, exchange.fault)
        if not self.wants_stream(exchange.request, exchange.body):
            return _json(message_body(plan))
        stream = EventStream(exchange)
        await stream.open()
        for name, data in stream_events(plan):
            await stream.send(data, event=name)
            if stream.dropped:
                break
        return await stream.finish(terminator=None)

    async def count_tokens(self, exchange: Exchange) -> web.StreamResponse:
        refusal = self._refusal(exchange, count_only=True)
        if refusal is not None:
            return refusal
        return _json({"input_tokens": input_tokens(exchange.body)})

    async def list_models(self, exchange: Exchange) -> web.StreamResponse:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": MODEL_CREATED_AT}
                for m in exchange.emulator.models()]
        return _json({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None})
