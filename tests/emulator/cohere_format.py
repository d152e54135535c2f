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

from aiohttp import web

from .cohere_chat import chat_body, plan_chat, stream_events, validate
from .openai_format import OpenAIFormat, json_response
from .wire import EventStream, Exchange, Route


class CohereFormat:
    """The Cohere v2 Chat route."""

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/v2/chat", self.chat),)

    # A bearer key, a model in the body and `stream: true`, as OpenAI's.
    authorized = OpenAIFormat.authorized
    model_of = OpenAIFormat.model_of
    wants_stream = OpenAIFormat.wants_stream

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        return json_response({"id": str(uuid.uuid4()), "message": message}, status)

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
