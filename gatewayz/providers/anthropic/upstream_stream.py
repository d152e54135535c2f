"""Anthropic Messages stream (server-sent events) -> OpenAI chat.completion.chunk dicts.

Events are told apart by their data's `type` (which Anthropic always sets to the event's name):
- message_start: the first chunk (role assistant, empty content); id, model and input usage are kept;
- content_block_start: text (its text, if any), tool_use (a tool call head: id, name, empty arguments),
  thinking (its text, if any, as reasoning_content); JSON mode's `json_response` tool opens no call: its
  input is streamed as content; other block types (server tools, redacted thinking) are skipped;
- content_block_delta: text_delta -> content, input_json_delta -> the call's argument fragment (JSON mode:
  content), thinking_delta -> reasoning_content; signature_delta and citations_delta have no OpenAI
  equivalent and are skipped;
- message_delta: the stop reason and the cumulative usage (output_tokens, and input counts when present);
- message_stop: the chunk carrying finish_reason, one usage-only chunk (when the upstream reported any
  usage; none means the gateway bills an estimate), then DONE;
- ping: nothing; error: {"error": {...}} in OpenAI's shape, and the stream is over.
An unknown event or delta type, or data that is not JSON, comes back as raw bytes ("event: NAME\\ndata:
...") that the gateway logs and counts, never forwards. A stream that ends without message_stop yields no
DONE. Tool call indexes count tool_use blocks only, from 0, in the order they start.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gatewayz.providers.anthropic.upstream_request import JSON_TOOL
from gatewayz.providers.anthropic.upstream_response import (
    arguments_json,
    completion_id,
    finish_reason,
    openai_error,
    openai_usage,
)
from gatewayz.providers.sse import DONE, SSEParser

JSON = dict[str, Any]
_USAGE_KEYS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens",
               "output_tokens_details")
_SILENT_DELTAS = frozenset({"signature_delta", "citations_delta"})


class AnthropicStreamDecoder:
    def __init__(self) -> None:
        self._sse = SSEParser()
        self._id = completion_id(None)
        self._model = ""
        self._created = int(time.time())
        self._usage: JSON = {}
        self._stop_reason: Any = None
        self._blocks: dict[Any, tuple[str, int]] = {}  # Anthropic block index -> (kind, tool call index)
        self._tools = 0
        self._over = False

    def feed(self, chunk: bytes) -> list[Any]:
        out: list[Any] = []
        for data in self._sse.feed(chunk):
            if self._over:
                break
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                out.append(data)
                continue
            out.extend(self._event(event, data))
        return out

    def _event(self, event: JSON, data: bytes) -> list[Any]:
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event, data)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind in ("content_block_stop", "ping"):
            return []
        if kind == "message_start":
            return self._message_start(event.get("message"))
        if kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            self._take_usage(event.get("usage"))
            return []
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            self._over = True
            return [{"error": openai_error(event.get("error"), "upstream_stream_error")}]
        return [_raw(kind, data)]

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def _message_start(self, message: Any) -> list[Any]:
        message = message if isinstance(message, dict) else {}
        self._id = completion_id(message.get("id"))
        if isinstance(message.get("model"), str):
            self._model = message["model"]
        self._take_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update((k, usage[k]) for k in _USAGE_KEYS if usage.get(k) is not None)

    def _block_start(self, event: JSON) -> list[Any]:
        block = event.get("content_block")
        block = block if isinstance(block, dict) else {}
        kind = block.get("type")
        index = event.get("index")
        if kind == "text":
            self._blocks[index] = ("text", 0)
            text = block.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if kind == "thinking":
            self._blocks[index] = ("thinking", 0)
            text = block.get("thinking")
            return [self._chunk({"reasoning_content": text})] if isinstance(text, str) and text else []
        if kind != "tool_use":
            self._blocks[index] = ("other", 0)
            return []
        given = block.get("input")
        arguments = arguments_json(given) if isinstance(given, dict) and given else ""
        if block.get("name") == JSON_TOOL:
            self._blocks[index] = ("json", 0)
            return [self._chunk({"content": arguments})] if arguments else []
        call = self._tools
        self._tools += 1
        self._blocks[index] = ("tool", call)
        head = {"index": call, "id": str(block.get("id") or ""), "type": "function",
                "function": {"name": str(block.get("name") or ""), "arguments": arguments}}
        return [self._chunk({"tool_calls": [head]})]

    def _delta(self, event: JSON, data: bytes) -> list[Any]:
        delta = event.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        kind = delta.get("type")
        block, call = self._blocks.get(event.get("index"), ("unknown", 0))
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return [self._chunk({"content": delta["text"]})] if delta["text"] else []
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return [self._chunk({"reasoning_content": delta["thinking"]})] if delta["thinking"] else []
        if kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            fragment = delta["partial_json"]
            if not fragment or block not in ("tool", "json"):
                return []
            if block == "json":
                return [self._chunk({"content": fragment})]
            return [self._chunk({"tool_calls": [{"index": call, "function": {"arguments": fragment}}]})]
        if kind in _SILENT_DELTAS:
            return []
        return [_raw(f"content_block_delta/{kind}", data)]

    def _message_stop(self) -> list[Any]:
        self._over = True
        out: list[Any] = [self._chunk({}, finish_reason(self._stop_reason, self._tools > 0))]
        if self._usage:
            out.append({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                        "model": self._model, "choices": [], "usage": openai_usage(self._usage)})
        out.append(DONE)
        return out


def _raw(kind: Any, data: bytes) -> bytes:
    """An event this decoder does not know, as bytes that are not a chunk (the gateway logs and counts them)."""
    return b"event: " + str(kind).encode() + b"\ndata: " + data
