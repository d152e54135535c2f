"""streamGenerateContent (?alt=sse) -> OpenAI chat.completion.chunk objects.

Each SSE event is a whole GenerateContentResponse holding the next piece of each candidate. Per candidate:
a first chunk with {"role": "assistant", "content": ""}, then one chunk per part (text -> content, thought
text -> reasoning_content, a functionCall -> one tool call with its complete arguments, as Gemini sends calls
whole). Gemini has no terminal event: a stream is complete when its body ends after a finishReason (some
models repeat finishReason on every event), so the finish_reason chunks, the usage chunk (from the last
usageMetadata) and DONE are emitted on feed(b""), the end-of-body signal (see adapter.StreamDecoder). A body
that ends without any finishReason is truncated: no DONE. An error object ({"error": {code, message,
status}}, alone or in an array) becomes an OpenAI error item; an event that is not JSON is returned as raw
bytes. A server that ignored alt=sse answers with a JSON array of responses: it is read whole at the end."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from gatewayz.providers.gemini.response import (
    candidate_indexes,
    candidate_parts,
    finish_reason,
    openai_error,
    openai_usage,
    tool_call,
)
from gatewayz.providers.sse import DONE, SSEParser

JSON = dict[str, Any]
_KNOWN = frozenset({"candidates", "usageMetadata", "promptFeedback", "modelVersion", "responseId", "createTime"})


@dataclass(slots=True)
class _Candidate:
    calls: int = 0                 # tool calls emitted so far (their OpenAI index)
    finish: str | None = None      # the last finishReason seen


class GeminiStreamDecoder:
    def __init__(self) -> None:
        self._sse = SSEParser()
        self._json_body: bytearray | None = None   # set when the body is a JSON array, not SSE
        self._sniffed = False
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = ""
        self._candidates: dict[int, _Candidate] = {}
        self._usage: JSON | None = None
        self._finished = False     # a finishReason or blockReason was seen
        self._blocked = False
        self._failed = False       # an error event was passed on
        self._ended = False

    def feed(self, chunk: bytes) -> list[Any]:
        if self._ended:
            return []
        if not chunk:
            return self._end()
        if not self._sniffed and chunk.strip():
            self._sniffed = True
            if chunk.lstrip()[:1] in (b"[", b"{"):
                self._json_body = bytearray()
        if self._json_body is not None:
            self._json_body += chunk
            return []
        out: list[Any] = []
        for data in self._sse.feed(chunk):
            out.extend(self._event(data))
        return out

    # internals

    def _event(self, data: bytes) -> list[Any]:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return [data]  # unreadable: the caller logs and counts it
        return self._response(obj, data)

    def _response(self, obj: Any, raw: bytes) -> list[Any]:
        if isinstance(obj, list):
            return [item for element in obj for item in self._response(element, raw)]
        if not isinstance(obj, dict):
            return [raw]
        if "error" in obj:
            self._failed = True
            error = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
            return [{"error": openai_error(error)}]
        if not self._candidates:
            rid = obj.get("responseId")
            if isinstance(rid, str) and rid:
                self.id = "chatcmpl-" + rid
            if isinstance(obj.get("modelVersion"), str):
                self.model = obj["modelVersion"]
        if isinstance(obj.get("usageMetadata"), dict):
            self._usage = obj["usageMetadata"]
        out: list[Any] = []
        feedback = obj.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self._blocked = self._finished = True
            out.extend(self._start(0))
        candidates = obj.get("candidates")
        if isinstance(candidates, list):
            for index, candidate in zip(candidate_indexes(candidates), candidates, strict=True):
                if isinstance(candidate, dict):
                    out.extend(self._candidate(index, candidate))
        if not out and not obj.keys() & _KNOWN:
            return [raw]  # nothing we know: logged, never silently dropped
        return out

    def _start(self, index: int) -> list[JSON]:
        if index in self._candidates:
            return []
        self._candidates[index] = _Candidate()
        return [self._chunk(index, {"role": "assistant", "content": ""})]

    def _candidate(self, index: int, candidate: JSON) -> list[JSON]:
        out = self._start(index)
        state = self._candidates[index]
        for part in candidate_parts(candidate):
            call = tool_call(part)
            if call is not None:
                out.append(self._chunk(index, {"tool_calls": [{"index": state.calls, **call}]}))
                state.calls += 1
            elif isinstance(part.get("text"), str) and part["text"]:
                key = "reasoning_content" if part.get("thought") is True else "content"
                out.append(self._chunk(index, {key: part["text"]}))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            state.finish = reason
            self._finished = True
        return out

    def _end(self) -> list[Any]:
        self._ended = True
        out: list[Any] = []
        if self._json_body is not None:
            try:
                body = orjson.loads(bytes(self._json_body))
            except orjson.JSONDecodeError:
                return [bytes(self._json_body[:2000])]
            out.extend(self._response(body, bytes(self._json_body[:2000])))
        elif self._sse.tail().strip():  # a last event without its blank line
            for data in self._sse.feed(b"\n\n"):
                out.extend(self._event(data))
        if not self._finished or self._failed:
            return out
        for index in sorted(self._candidates):
            state = self._candidates[index]
            reason = "content_filter" if self._blocked and state.finish is None else \
                finish_reason(state.finish, state.calls > 0)
            out.append(self._chunk(index, {}, reason))
        usage = openai_usage(self._usage)
        if usage is not None:
            out.append({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage})
        out.append(DONE)
        return out

    def _chunk(self, index: int, delta: JSON, finish: str | None = None) -> JSON:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
