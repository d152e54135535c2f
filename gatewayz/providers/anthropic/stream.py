"""OpenAI chat.completion.chunk stream -> Anthropic Messages stream events, and their SSE framing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from gatewayz.providers.anthropic.response import (
    anthropic_input_tokens,
    message_id,
    stop_reason,
    tool_use_id,
    usage_counts,
)

JSON = dict[str, Any]
Event = tuple[str, JSON]


def sse(event: str, data: JSON) -> bytes:
    """One server-sent event as Anthropic frames it: b"event: NAME\\ndata: {json}\\n\\n"."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass
class _ToolCall:
    id: str | None
    name: str = ""
    block: int | None = None  # the Anthropic content block index, once started
    pending: list[str] = field(default_factory=list)  # argument fragments that arrived before the name


class StreamTranslator:
    """Feeds OpenAI chat.completion.chunk dicts, yields Anthropic stream events as (event_name, data_dict).

    Only the first choice (index 0) is translated. Content blocks are emitted one after another: text
    opens a text block, each tool call its own tool_use block (a block starts once the tool's name is
    known; argument fragments that come earlier are held back). An upstream that interleaves the argument
    fragments of parallel tool calls gets late fragments delivered to the earlier, already stopped, block:
    the SDKs accumulate by index, so nothing is lost. `usage` is the upstream's (prompt_tokens,
    completion_tokens) once a chunk carried usage, for accounting; the events themselves report input
    tokens the Anthropic way (excluding cache reads, which go to cache_read_input_tokens)."""

    def __init__(self, model: str, message_id: str | None = None) -> None:
        self.model = model
        self.message_id = message_id
        self.usage: tuple[int, int] | None = None
        self.unrecognised = 0
        self._cached = 0
        self._started = False
        self._finished = False
        self._blocks = 0  # content blocks started so far
        self._open: int | None = None  # index of the open block
        self._open_is_text = False
        self._tools: dict[Any, _ToolCall] = {}
        self._last_tool: Any = None
        self._finish_reason: str | None = None

    def feed(self, chunk: JSON) -> list[Event]:
        if self._finished:
            self.unrecognised += 1
            return []
        if not isinstance(chunk, dict):
            self.unrecognised += 1
            return [] if self._started else [self._message_start(None)]
        recognised = self._take_usage(chunk.get("usage"))
        events = [] if self._started else [self._message_start(chunk.get("id"))]
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                reason = choice.get("finish_reason")
                if not isinstance(delta, dict) and not isinstance(reason, str):
                    continue
                recognised = True
                if isinstance(delta, dict):
                    events.extend(self._delta(delta))
                if isinstance(reason, str) and reason:
                    self._finish_reason = reason
        if not recognised:
            self.unrecognised += 1
        return events

    def finish(self) -> list[Event]:
        """Close the open block and end the message (stop reason, final usage). Idempotent."""
        if self._finished:
            return []
        events: list[Event] = []
        if not self._started:
            events.append(self._message_start(None))
        for tool in self._tools.values():  # arguments of a tool whose name never came
            if tool.block is None and (tool.pending or tool.id):
                events.extend(self._start_tool(tool))
        events.extend(self._close())
        usage: JSON = {"output_tokens": self.usage[1] if self.usage else 0}
        if self.usage is not None:
            usage["input_tokens"] = anthropic_input_tokens(self.usage[0], self._cached)
            usage["cache_read_input_tokens"] = self._cached
        reason = stop_reason(self._finish_reason, has_tool_use=bool(self._tools))
        events.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": usage,
        }))
        events.append(("message_stop", {"type": "message_stop"}))
        self._finished = True
        return events

    def error(self, message: str) -> list[Event]:
        """An Anthropic error event, ending the stream (a later finish() emits nothing)."""
        self._finished = True
        return [("error", {"type": "error", "error": {"type": "api_error", "message": message}})]

    # internals

    def _message_start(self, upstream_id: Any) -> Event:
        self._started = True
        if self.message_id is None:
            self.message_id = message_id(upstream_id)
        input_tokens = anthropic_input_tokens(self.usage[0], self._cached) if self.usage else 0
        return ("message_start", {"type": "message_start", "message": {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 0},
        }})

    def _take_usage(self, usage: Any) -> bool:
        if not isinstance(usage, dict):
            return False
        prompt, completion, cached = usage_counts(usage)
        self.usage = (prompt, completion)
        self._cached = cached
        return True

    def _delta(self, delta: JSON) -> list[Event]:
        events: list[Event] = []
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                events.extend(self._text(text))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                events.extend(self._tool_delta(call))
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            events.extend(self._tool_delta({"index": "function_call", "function": legacy}))
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or not self._open_is_text:
            events.extend(self._close())
            index = self._new_block(is_text=True)
            events.append(("content_block_start", {
                "type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""},
            }))
        events.append(("content_block_delta", {
            "type": "content_block_delta", "index": self._open, "delta": {"type": "text_delta", "text": text},
        }))
        return events

    def _tool_delta(self, call: JSON) -> list[Event]:
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        key = call.get("index")
        if not isinstance(key, int | str):  # no index: a new id means a new call, else the latest call
            key = next((k for k, t in self._tools.items() if call_id and t.id == call_id), None)
            if key is None:
                key = ("id", call_id) if call_id or self._last_tool is None else self._last_tool
        tool = self._tools.get(key)
        if tool is None:
            tool = self._tools[key] = _ToolCall(id=call_id)
        self._last_tool = key
        if tool.id is None:
            tool.id = call_id
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        if isinstance(name, str) and name and tool.block is None:
            tool.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # non-conforming upstreams send the object itself
            arguments = json.dumps(arguments, ensure_ascii=False)
        if isinstance(arguments, str) and arguments:
            tool.pending.append(arguments)
        if tool.block is None:
            return self._start_tool(tool) if tool.name else []
        return self._flush(tool)

    def _start_tool(self, tool: _ToolCall) -> list[Event]:
        events = self._close()
        tool.id = tool_use_id(tool.id)
        tool.block = self._new_block(is_text=False)
        events.append(("content_block_start", {
            "type": "content_block_start",
            "index": tool.block,
            "content_block": {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}},
        }))
        return events + self._flush(tool)

    def _flush(self, tool: _ToolCall) -> list[Event]:
        if not tool.pending:
            return []
        fragment = "".join(tool.pending)
        tool.pending.clear()
        return [("content_block_delta", {
            "type": "content_block_delta",
            "index": tool.block,
            "delta": {"type": "input_json_delta", "partial_json": fragment},
        })]

    def _new_block(self, is_text: bool) -> int:
        self._open = self._blocks
        self._open_is_text = is_text
        self._blocks += 1
        return self._open

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]
