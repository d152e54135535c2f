"""OpenAI chat.completion.chunk stream -> Responses API stream events (with sequence numbers), and their SSE framing.

Order, as OpenAI sends it: response.created, response.in_progress; then per output item
response.output_item.added, for a message or reasoning item response.content_part.added, the deltas
(response.output_text.delta / response.refusal.delta / response.reasoning_text.delta, or
response.function_call_arguments.delta), their .done, response.content_part.done, response.output_item.done;
last response.completed (response.incomplete when the answer was cut by max_output_tokens or a content filter)
with the full response and its usage, or response.failed when the upstream stream broke off.

Only the first choice is translated. A message or reasoning item closes when another item starts; function
calls stay open to the end, so an upstream that interleaves the argument fragments of parallel calls still
has every fragment land on its own call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gatewayz.providers.chat_parts import logprob_entries
from gatewayz.providers.responses.response import (
    arguments_of,
    call_item,
    message_item,
    new_id,
    reasoning_item,
    reasoning_of,
    response_object,
    text_part,
)

JSON = dict[str, Any]

# content part type -> (the part's text field, the delta/done event family)
_PARTS = {"output_text": ("text", "response.output_text"), "refusal": ("refusal", "response.refusal"),
          "reasoning_text": ("text", "response.reasoning_text")}


def sse(event: JSON) -> bytes:
    """One server-sent event as OpenAI frames Responses events: b"event: TYPE\\ndata: {json}\\n\\n"."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass
class _Item:
    """An open message or reasoning item: its closed parts and the part being written."""

    index: int
    id: str
    kind: str                       # "message" | "reasoning"
    parts: list[JSON] = field(default_factory=list)
    part: str | None = None         # the open part's type
    text: list[str] = field(default_factory=list)
    logprobs: list[JSON] = field(default_factory=list)


@dataclass
class _Call:
    index: int
    id: str
    call_id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class ResponseEvents:
    """Feeds chat chunks, returns Responses stream events (dicts, numbered in order)."""

    def __init__(self, model: str, echo: JSON, resp_id: str, created_at: int) -> None:
        self.model, self.echo, self.resp_id, self.created_at = model, echo, resp_id, created_at
        self.finish_reason: str | None = None
        self._seq = 0
        self._started = False
        self._ended = False
        self._output: list[JSON | None] = []    # items by output index: None while open
        self._open: _Item | None = None
        self._calls: dict[Any, _Call] = {}

    # public

    def start(self) -> list[JSON]:
        if self._started:
            return []
        self._started = True
        return [self._lifecycle("response.created", "in_progress"),
                self._lifecycle("response.in_progress", "in_progress")]

    def feed(self, chunk: JSON) -> list[JSON]:
        events = self.start()
        if self._ended:
            return events
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                events.extend(self._delta(delta, choice))
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self, usage: JSON | None) -> list[JSON]:
        """Close every open item, then response.completed (or .incomplete) with the usage."""
        if self._ended:
            return []
        events = self.start() + self._close_open()
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            events.extend(self._close_call(call))
        self._ended = True
        final = response_object(self.resp_id, self.created_at, self.model, self.echo, status="completed",
                                output=[i for i in self._output if i is not None], usage=usage,
                                finish_reason=self.finish_reason)
        events.append(self._event(f"response.{final['status']}", response=final))
        return events

    def fail(self, message: str, usage: JSON | None) -> list[JSON]:
        """response.failed: the items so far (unfinished ones marked incomplete), the error, what was billed."""
        if self._ended:
            return []
        events = self.start()
        self._ended = True
        output = [item if item is not None else self._unfinished(i) for i, item in enumerate(self._output)]
        failed = response_object(self.resp_id, self.created_at, self.model, self.echo, status="failed",
                                 output=output, usage=usage, error={"code": "server_error", "message": message})
        events.append(self._event("response.failed", response=failed))
        return events

    # internals

    def _event(self, kind: str, **fields: Any) -> JSON:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _lifecycle(self, kind: str, status: str) -> JSON:
        return self._event(kind, response=response_object(self.resp_id, self.created_at, self.model, self.echo,
                                                          status=status, output=[]))

    def _delta(self, delta: JSON, choice: JSON) -> list[JSON]:
        events: list[JSON] = []
        reasoning = reasoning_of(delta)
        if reasoning:
            events.extend(self._write("reasoning", "reasoning_text", reasoning, []))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.extend(self._write("message", "output_text", content, logprob_entries(choice)))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            events.extend(self._write("message", "refusal", refusal, []))
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else []):
            if isinstance(call, dict):
                events.extend(self._call_delta(call, position))
        return events

    def _write(self, kind: str, part: str, text: str, logprobs: list[JSON]) -> list[JSON]:
        events: list[JSON] = []
        item = self._open
        if item is None or item.kind != kind:
            events.extend(self._close_open())
            item = self._open = _Item(self._new_index(), new_id("rs_" if kind == "reasoning" else "msg_"), kind)
            shell = reasoning_item("", item.id, "in_progress") if kind == "reasoning" \
                else message_item([], item.id, "in_progress")
            shell["content"] = []
            events.append(self._event("response.output_item.added", output_index=item.index, item=shell))
        if item.part != part:
            events.extend(self._close_part(item))
            item.part = part
            events.append(self._event("response.content_part.added", item_id=item.id, output_index=item.index,
                                      content_index=len(item.parts), part=_part(part, "", [])))
        item.text.append(text)
        item.logprobs.extend(logprobs)
        fields: JSON = {"item_id": item.id, "output_index": item.index, "content_index": len(item.parts),
                        "delta": text}
        if part == "output_text":
            fields["logprobs"] = logprobs
        events.append(self._event(_PARTS[part][1] + ".delta", **fields))
        return events

    def _close_part(self, item: _Item) -> list[JSON]:
        if item.part is None:
            return []
        key, family = _PARTS[item.part]
        text = "".join(item.text)
        where = {"item_id": item.id, "output_index": item.index, "content_index": len(item.parts)}
        done: JSON = {key: text}
        if item.part == "output_text":
            done["logprobs"] = item.logprobs
        part = _part(item.part, text, item.logprobs)
        events = [self._event(family + ".done", **where, **done),
                  self._event("response.content_part.done", **where, part=part)]
        item.parts.append(part)
        item.part, item.text, item.logprobs = None, [], []
        return events

    def _close_open(self) -> list[JSON]:
        item = self._open
        if item is None:
            return []
        self._open = None
        events = self._close_part(item)
        status = "incomplete" if self.finish_reason in ("length", "content_filter") else "completed"
        done = message_item(item.parts, item.id, status) if item.kind == "message" else \
            {**reasoning_item("", item.id), "content": item.parts}
        self._output[item.index] = done
        events.append(self._event("response.output_item.done", output_index=item.index, item=done))
        return events

    def _call_delta(self, call: JSON, position: int) -> list[JSON]:
        key = call.get("index", position)
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        events: list[JSON] = []
        entry = self._calls.get(key)
        if entry is None:
            events.extend(self._close_open())
            shell = call_item(call.get("id"), function.get("name"), "", status="in_progress")
            entry = self._calls[key] = _Call(self._new_index(), shell["id"], shell["call_id"], shell["name"])
            events.append(self._event("response.output_item.added", output_index=entry.index, item=shell))
        elif not entry.name and isinstance(function.get("name"), str):
            entry.name = function["name"]
        fragment = arguments_of(function.get("arguments"))
        if fragment:
            entry.arguments.append(fragment)
            events.append(self._event("response.function_call_arguments.delta", item_id=entry.id,
                                      output_index=entry.index, delta=fragment))
        return events

    def _close_call(self, call: _Call) -> list[JSON]:
        arguments = "".join(call.arguments)
        item = call_item(call.call_id, call.name, arguments, call.id)
        self._output[call.index] = item
        return [self._event("response.function_call_arguments.done", item_id=call.id, output_index=call.index,
                            name=call.name, arguments=arguments),
                self._event("response.output_item.done", output_index=call.index, item=item)]

    def _new_index(self) -> int:
        self._output.append(None)
        return len(self._output) - 1

    def _unfinished(self, index: int) -> JSON:
        item = self._open
        if item is not None and item.index == index:
            parts = [*item.parts, _part(item.part, "".join(item.text), item.logprobs)] if item.part else item.parts
            if item.kind == "message":
                return message_item(parts, item.id, "incomplete")
            return {**reasoning_item("", item.id, "incomplete"), "content": parts}
        call = next(c for c in self._calls.values() if c.index == index)
        return call_item(call.call_id, call.name, "".join(call.arguments), call.id, "incomplete")


def _part(kind: str, text: str, logprobs: list[JSON]) -> JSON:
    if kind == "output_text":
        return text_part(text, logprobs)
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "reasoning_text", "text": text}
