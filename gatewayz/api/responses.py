"""POST /v1/responses: OpenAI's Responses API, stateless, served by any chat provider. The request becomes a chat
completion (gatewayz.providers.responses.request says what is translated, dropped and refused), the answer a
`response` object and the stream Responses events; errors keep OpenAI's error body. Nothing is stored, so
`previous_response_id` is refused: clients send the whole conversation in `input`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from gatewayz.api.chat import OpenAIErrors, served_model
from gatewayz.api.inference import InferenceEndpoint
from gatewayz.pipeline.context import RequestContext, Usage
from gatewayz.pipeline.parse import check_chat, load_json
from gatewayz.providers.responses.request import responses_to_chat
from gatewayz.providers.responses.response import chat_to_response, new_id, usage_object
from gatewayz.providers.responses.stream import ResponseEvents, sse

if TYPE_CHECKING:
    from gatewayz.container import Container


class OpenAIResponses(OpenAIErrors):
    endpoint = "responses"

    def parse(self, ctx: RequestContext) -> None:
        chat, ctx.echo = responses_to_chat(load_json(ctx.raw))
        check_chat(ctx, chat)

    def body(self, ctx: RequestContext, data: dict[str, Any], usage: Usage, cost: int) -> bytes:
        created = data.get("created")
        response = chat_to_response(data, new_id("resp_"), created if isinstance(created, int) else int(time.time()),
                                    served_model(ctx), ctx.echo, usage_object(usage, cost))
        return orjson.dumps(response)

    def stream(self, ctx: RequestContext) -> _ResponsesStream:
        return _ResponsesStream(ctx)


class _ResponsesStream:
    __slots__ = ("ctx", "events")

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.events = ResponseEvents(served_model(ctx), ctx.echo, new_id("resp_"), int(time.time()))

    def chunks(self, chunks: list[dict[str, Any]]) -> bytes:
        out = self.events.start()
        for chunk in chunks:
            out.extend(self.events.feed(chunk))
        return b"".join(sse(e) for e in out)

    def end(self, usage_raw: dict[str, Any] | None, usage: Usage, cost: int) -> bytes:
        return b"".join(sse(e) for e in self.events.finish(usage_object(usage, cost)))

    def fail(self, message: str) -> bytes:
        # The tracker settled before this: what was delivered is billed, and said so in the failed response.
        usage = usage_object(self.ctx.usage, self.ctx.cost_nanos) if self.ctx.usage else None
        return b"".join(sse(e) for e in self.events.fail(message, usage))


def Responses(container: Container) -> InferenceEndpoint:  # noqa: N802 - reads as the endpoint it builds
    return InferenceEndpoint(container, OpenAIResponses())
