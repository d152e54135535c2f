"""Cohere v2 Chat wire format: ``POST /v2/chat``.

Auth is ``Authorization: Bearer <key>``. Errors use Cohere's shape ``{"id": "<uuid>", "message": "..."}``
(401 for a wrong key, 400 ``invalid request: ...`` for a request Cohere would refuse, and whatever status a
fault asks for). Streams are named server-sent events (``event: message-start`` ... ``event: message-end``, the
data's ``type`` repeating the name) with no terminator. Answers, validation and token accounting:
``cohere_chat``. Use ``emulator.url + "/v2"`` as the provider's base URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .cohere_chat import chat_body, plan_chat, stream_events, validate
from .openai_format import json_response
from .wire import EventStream, Exchange, Route


class CohereFormat:
    """The Cohere v2 Chat route."""

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/v2/chat", self.chat),)

    def authorized(self, request: web.Request, api_key: str) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == api_key

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        return json_response({"id": str(uuid.uuid4()), "message": message}, status)

    def model_of(self, request: web.Request, body: Any) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    def wants_stream(self, request: web.Request, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    async def not_found(self, exchange: Exchange) -> web.StreamResponse:
        return self.error(404, f"path {exchange.request.path} not found")

    async def chat(self, exchange: Exchange) -> web.StreamResponse:
        problem = validate(exchange.body)
        if problem is not None:
            return self.error(400, problem)
        plan = plan_chat(exchange.body, exchange.fault)
        if not self.wants_stream(exchange.request, exchange.body):
            return json_response(chat_body(plan))
        stream = EventStream(exchange)
        await stream.open()
        for event in stream_events(plan):
            await stream.send(event, event=event["type"])
            if stream.dropped:
                break
        return await stream.finish(terminator=None)
