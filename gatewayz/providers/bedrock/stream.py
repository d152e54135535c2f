"""ConverseStream (binary event stream) -> OpenAI chat.completion.chunk dicts.

Events: the first content brings the first chunk (role assistant, empty content); contentBlockStart with a toolUse ->
a tool_calls head (id = toolUseId, the name, empty arguments), numbered 0, 1, ... in the order the tools
start; contentBlockDelta -> content (text), tool arguments fragments (toolUse.input), reasoning_content
(reasoningContent.text); messageStop -> an empty delta carrying finish_reason; metadata -> the usage-only
chunk. DONE follows once both messageStop and metadata came (Converse sends metadata last).

Exception messages (throttlingException, modelStreamErrorException, validationException, ...) and
`:message-type error` messages become {"error": {...}}. Unknown event types are skipped (forward
compatible); a payload that is not JSON, an unknown message type and everything from a corrupt frame on
(bad CRC, impossible lengths) come back as raw bytes for the caller to log and count, with no DONE. When
not one message could be read (the body is no event stream), an error comes first, before those bytes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from gatewayz.providers.bedrock.eventstream import EventStreamDecoder, Message
from gatewayz.providers.bedrock.request import JSON_TOOL
from gatewayz.providers.bedrock.response import completion_id, error_object, finish_reason, openai_usage
from gatewayz.providers.sse import DONE

JSON = dict[str, Any]


class ConverseStreamDecoder:
    """feed(bytes) -> OpenAI chunks, {"error": ...} dicts, DONE, or raw bytes it could not read."""

    __slots__ = ("_frames", "_id", "_created", "_read_any", "_started", "_tools", "_json_blocks", "_stopped",
                 "_metadata", "_closed")

    def __init__(self) -> None:
        self._frames = EventStreamDecoder()
        self._id = completion_id()
        self._created = int(time.time())
        self._read_any = False  # a message was decoded
        self._started = False
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._json_blocks: set[int] = set()  # blocks of the JSON-mode tool: their input is the answer text
        self._stopped = False
        self._metadata = False
        self._closed = False

    def feed(self, chunk: bytes) -> list[Any]:
        out: list[Any] = []
        for item in self._frames.feed(chunk):
            if isinstance(item, bytes):
                if item and not self._read_any and not self._closed:
                    # Not an event stream at all (an HTML or JSON page with a 200): an error first, so a
                    # request that got nothing yet fails over.
                    out.append(self._error(f"unreadable event stream ({self._frames.error})", "malformed_stream")[0])
                if item:
                    out.append(item)
            elif not self._closed:
                self._read_any = True
                out.extend(self._message(item))
        return out

    # ------------------------------------------------------------------------------------------ messages

    def _message(self, message: Message) -> list[Any]:
        kind = message.header(":message-type")
        if kind == "exception":
            name = message.header(":exception-type") or "exception"
            return self._error(_payload_message(message.payload) or name, name)
        if kind == "error":
            code = message.header(":error-code") or "error"
            return self._error(message.header(":error-message") or code, code)
        if kind != "event":
            return [message.payload or f"event-stream message of type {kind!r}".encode()]
        try:
            event = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return [message.payload]
        if not isinstance(event, dict):
            return [message.payload]
        handler = _HANDLERS.get(message.header(":event-type") or "")
        return handler(self, event) if handler is not None else []

    def _error(self, text: str, code: str) -> list[Any]:
        self._closed = True
        return [error_object(text, code, "upstream_error")]

    def _message_start(self, event: JSON) -> list[Any]:
        # The role chunk waits for the first content: an exception right after messageStart is then the
        # stream's first item, and the request can still fail over to another provider.
        return []

    def _block_start(self, event: JSON) -> list[Any]:
        start = event.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        index = event.get("contentBlockIndex")
        if not isinstance(use, dict) or not isinstance(index, int):
            return []
        return self._start_tool(index, use.get("toolUseId"), use.get("name"))

    def _start_tool(self, block: int, tool_id: Any, name: Any) -> list[Any]:
        if name == JSON_TOOL:
            self._json_blocks.add(block)
            return self._begin()
        position = self._tools[block] = len(self._tools)
        head = {"index": position, "id": tool_id if isinstance(tool_id, str) and tool_id else
                "call_" + uuid.uuid4().hex[:24], "type": "function",
                "function": {"name": name if isinstance(name, str) else "", "arguments": ""}}
        return [*self._begin(), self._chunk({"tool_calls": [head]})]

    def _block_delta(self, event: JSON) -> list[Any]:
        delta = event.get("delta")
        block = event.get("contentBlockIndex")
        if not isinstance(delta, dict) or not isinstance(block, int):
            return []
        text = delta.get("text")
        if isinstance(text, str):
            return [*self._begin(), self._chunk({"content": text})] if text else []
        use = delta.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("input"), str):
            return self._tool_fragment(block, use["input"])
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str) and reasoning["text"]:
            return [*self._begin(), self._chunk({"reasoning_content": reasoning["text"]})]
        return []  # citations, reasoning signatures, image or tool-result deltas: nothing OpenAI carries

    def _tool_fragment(self, block: int, fragment: str) -> list[Any]:
        if block in self._json_blocks:
            return [self._chunk({"content": fragment})] if fragment else []
        out: list[Any] = []
        if block not in self._tools:  # a fragment without its start: open the call so nothing is lost
            out = self._start_tool(block, None, "")
        if fragment:
            out.append(self._chunk({"tool_calls": [{"index": self._tools[block],
                                                    "function": {"arguments": fragment}}]}))
        return out

    def _message_stop(self, event: JSON) -> list[Any]:
        self._stopped = True
        out = [*self._begin(), self._chunk({}, finish_reason(event.get("stopReason"), bool(self._tools)))]
        return out + self._done()

    def _metadata_event(self, event: JSON) -> list[Any]:
        self._metadata = True
        usage = openai_usage(event.get("usage"))
        out: list[Any] = []
        if usage is not None:
            out.append({"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": "",
                        "choices": [], "usage": usage})
        return out + self._done()

    # ------------------------------------------------------------------------------------------- helpers

    def _done(self) -> list[Any]:
        if self._stopped and self._metadata:
            self._closed = True
            return [DONE]
        return []

    def _begin(self) -> list[Any]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": "",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def _payload_message(payload: bytes) -> str:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")[:500]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("Message") or "")
    return ""


_HANDLERS = {
    "messageStart": ConverseStreamDecoder._message_start,
    "contentBlockStart": ConverseStreamDecoder._block_start,
    "contentBlockDelta": ConverseStreamDecoder._block_delta,
    "contentBlockStop": lambda self, event: [],
    "messageStop": ConverseStreamDecoder._message_stop,
    "metadata": ConverseStreamDecoder._metadata_event,
}
