"""Cohere v2 Chat stream (server-sent events) -> OpenAI chat.completion.chunk dicts.

Events are told apart by their data's `type` (the same as the `event:` name):
- message-start: the first chunk (role assistant, empty content); the id is kept;
- content-start: a text or thinking block opens (its initial text, if any, is sent); content-delta:
  delta.message.content.text -> content, .thinking -> reasoning_content; content-end: nothing;
- tool-plan-delta: delta.message.tool_plan -> content (why: see response.py);
- tool-call-start: a tool call head (id, name, initial arguments); tool-call-delta: an argument fragment;
  tool-call-end: nothing. OpenAI's tool call index counts the calls from 0 in the order they start; Cohere's
  event index is mapped onto it;
- citation-start / citation-end (RAG citations) and debug: known, nothing to forward;
- message-end: the chunk carrying finish_reason, one usage-only chunk (when usage was reported; none means
  the gateway bills an estimate), then DONE. A finish_reason ERROR or TIMEOUT instead yields
  {"error": {...}} (the message from delta.error when given) and no DONE: the generation failed midway.
An unknown event type, or data that is not JSON, comes back as raw bytes ("event: TYPE\\ndata: ...") that the
gateway logs and counts, never forwards. A `[DONE]` line some deployments send after message-end is ignored.
A stream that ends without message-end yields no DONE.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gatewayz.providers.cohere.messages import JSON
from gatewayz.providers.cohere.response import FAILED, completion_id, finish_reason, obj, openai_usage, reason_of
from gatewayz.providers.sse import DONE, SSEParser

_SILENT = frozenset({"content-end", "tool-call-end", "citation-start", "citation-end", "debug"})


def _message(event: JSON) -> JSON:
    return obj(obj(event.get("delta")).get("message"))


def _one_call(message: JSON) -> JSON:
    """The tool call of a tool-call event (an object; a one-element list is accepted too)."""
    call = message.get("tool_calls")
    return obj(call[0] if isinstance(call, list) and call else call)


class CohereStreamDecoder:
    def __init__(self) -> None:
        self._sse = SSEParser()
        self._id = completion_id(None)
        self._created = int(time.time())
        self._calls: dict[Any, int] = {}  # Cohere's tool call index -> OpenAI's
        self._over = False

    def feed(self, chunk: bytes) -> list[Any]:
        items: list[Any] = []
        for data in self._sse.feed(chunk):
            if not self._over:  # nothing after message-end counts
                items += self._decode(data)
        return items

    def _decode(self, data: bytes) -> list[Any]:
        if data.strip() == DONE:
            return []
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [data]  # unreadable: the gateway logs and counts it
        return self._event(event, data) if isinstance(event, dict) else [data]

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": "",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def _text(self, key: str, value: Any) -> list[Any]:
        return [self._chunk({key: value})] if isinstance(value, str) and value else []

    def _event(self, event: JSON, data: bytes) -> list[Any]:
        kind = event.get("type")
        message = _message(event)
        if kind == "content-delta" or kind == "content-start":
            content = obj(message.get("content"))
            return self._text("content", content.get("text")) + self._text("reasoning_content",
                                                                          content.get("thinking"))
        if kind == "tool-call-delta":
            return self._arguments(event, message, data)
        if kind == "tool-plan-delta":
            return self._text("content", message.get("tool_plan"))
        if kind == "tool-call-start":
            return self._call_start(event, message)
        if kind in _SILENT:
            return []
        if kind == "message-start":
            self._id = completion_id(event.get("id"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message-end":
            return self._end(event)
        return [b"event: " + str(kind).encode() + b"\ndata: " + data]

    def _call_start(self, event: JSON, message: JSON) -> list[Any]:
        call = _one_call(message)
        function = obj(call.get("function"))
        index = self._calls[event.get("index")] = len(self._calls)
        arguments = function.get("arguments")
        head = {"index": index, "id": str(call.get("id") or ""), "type": "function",
                "function": {"name": str(function.get("name") or ""),
                             "arguments": arguments if isinstance(arguments, str) else ""}}
        return [self._chunk({"tool_calls": [head]})]

    def _arguments(self, event: JSON, message: JSON, data: bytes) -> list[Any]:
        fragment = obj(_one_call(message).get("function")).get("arguments")
        index = self._calls.get(event.get("index"))
        if index is None or not isinstance(fragment, str):
            return [b"event: tool-call-delta\ndata: " + data]  # a fragment of no known call: logged, counted
        return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})] \
            if fragment else []

    def _end(self, event: JSON) -> list[Any]:
        self._over = True
        delta = obj(event.get("delta"))
        reason = reason_of(delta.get("finish_reason"))
        if reason in FAILED:
            detail = delta.get("error") if isinstance(delta.get("error"), str) and delta.get("error") else \
                f"Cohere ended the generation with {reason}."
            return [{"error": {"message": detail, "type": "upstream_error", "param": None,
                               "code": f"cohere_{reason.lower()}"}}]
        out: list[Any] = [self._chunk({}, finish_reason(reason, bool(self._calls)))]
        usage = openai_usage(delta.get("usage"))
        if usage is not None:
            out.append({"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": "",
                        "choices": [], "usage": usage})
        out.append(DONE)
        return out
