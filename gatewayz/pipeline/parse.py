"""Stage: parse the JSON body and check the parameters the gateway itself relies on.

Everything else the client sends is passed to the upstream untouched."""

from __future__ import annotations

from typing import Any

import orjson

from gatewayz.errors import InvalidRequest
from gatewayz.pipeline.context import RequestContext


def _positive_int(body: dict[str, Any], name: str, upper: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper:
        raise InvalidRequest(f"`{name}` must be an integer from 1 to {upper}.", param=name,
                             code="invalid_value")
    return value


def load_json(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.",
                             code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def parse_chat(ctx: RequestContext) -> None:
    check_chat(ctx, load_json(ctx.raw))


def check_chat(ctx: RequestContext, body: dict[str, Any]) -> None:
    """Validate an OpenAI-format chat request and take what the pipeline needs from it."""
    ctx.body = body
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a string.", param="model", code="missing_model")
    ctx.requested_model = model
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty array.", param="messages", code="invalid_messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidRequest(f"`messages[{i}]` must be an object with a string `role`.",
                                 param=f"messages[{i}]", code="invalid_messages")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("`stream` must be a boolean.", param="stream", code="invalid_value")
    ctx.stream = bool(stream)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("`stream_options` must be an object.", param="stream_options", code="invalid_value")
    ctx.include_usage = bool(options and options.get("include_usage"))
    _positive_int(body, "max_tokens", 100_000_000)
    _positive_int(body, "max_completion_tokens", 100_000_000)
    _positive_int(body, "n", 128)


def requested_output_tokens(body: dict[str, Any]) -> int | None:
    """The client's cap on generated tokens, if any (max_completion_tokens wins, as at OpenAI)."""
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value else None
