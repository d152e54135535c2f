"""Legacy completions (POST /v1/completions) <-> OpenAI chat completions: the prompt becomes one user message.

- prompt: a string, or a list holding exactly one string. A batch of prompts (one choice each) would take one
  upstream call per prompt, and token-id prompts need the model's own tokenizer: both are refused (400).
- suffix (text insertion) and best_of > 1 (server-side sampling of candidates) have no chat equivalent: 400.
- max_tokens defaults to 16, as at OpenAI. temperature, top_p, n, stop, presence_penalty, frequency_penalty,
  logit_bias, seed, user, stream and stream_options pass through, as do the gateway's routing fields.
- echo puts the prompt before each choice's text (before the first streamed piece of each choice).
- logprobs N (0 to 5) asks the chat upstream for logprobs with N alternatives and answers in the legacy shape
  (tokens, token_logprobs, top_logprobs, text_offset). With echo it is refused: chat gives no prompt logprobs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NoReturn

from gatewayz.errors import InvalidRequest
from gatewayz.providers.chat_parts import content_text, logprob_entries
from gatewayz.routing.planner import GATEWAY_FIELDS

JSON = dict[str, Any]
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for legacy completions
MAX_LOGPROBS = 5
_PASSED = ("temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "seed",
           "user", "stream", "stream_options", *GATEWAY_FIELDS)
_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


@dataclass(frozen=True, slots=True)
class Legacy:
    """What the answer needs from the request."""

    prompt: str
    echo: bool
    logprobs: bool


def _unsupported(param: str, message: str) -> NoReturn:
    raise InvalidRequest(message, param=param, code="unsupported_parameter")


def completions_to_chat(body: JSON) -> tuple[JSON, Legacy]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a string.", param="model", code="missing_model")
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1:
            _unsupported("prompt", "Only one prompt per request is supported: send a string (or a list of one).")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest("`prompt` is required and must be a string (token-id prompts are not supported).",
                             param="prompt", code="invalid_value")
    if body.get("suffix"):
        _unsupported("suffix", "`suffix` is not supported: the gateway serves completions through chat models.")
    if body.get("best_of") not in (None, 1):
        _unsupported("best_of", "`best_of` above 1 is not supported; use `n` for several completions.")
    echo = body.get("echo")
    if echo is not None and not isinstance(echo, bool):
        raise InvalidRequest("`echo` must be a boolean.", param="echo", code="invalid_value")
    max_tokens = body.get("max_tokens")
    chat: JSON = {"model": model, "messages": [{"role": "user", "content": prompt}],
                  "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens}
    chat.update((k, body[k]) for k in _PASSED if body.get(k) is not None)
    logprobs = body.get("logprobs")
    if logprobs is not None:
        if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= MAX_LOGPROBS:
            raise InvalidRequest(f"`logprobs` must be an integer from 0 to {MAX_LOGPROBS}.", param="logprobs",
                                 code="invalid_value")
        if echo:
            _unsupported("logprobs", "`logprobs` with `echo` is not supported: the prompt's logprobs are not "
                                     "available through chat models.")
        chat["logprobs"] = True
        chat["top_logprobs"] = logprobs
    return chat, Legacy(prompt, bool(echo), logprobs is not None)


def completion_id(upstream_id: Any) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return "cmpl-" + upstream_id.removeprefix("chatcmpl-")
    return "cmpl-" + uuid.uuid4().hex


def finish_reason(reason: Any) -> str | None:
    """Legacy completions know stop, length and content_filter; a tool call ended the text like a stop."""
    if not isinstance(reason, str):
        return None
    return _FINISH.get(reason, "stop")


def legacy_logprobs(entries: list[JSON], offset: int) -> tuple[JSON, int]:
    """Chat logprobs entries -> the legacy logprobs object (text offsets from `offset`), and the next offset."""
    out: JSON = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for entry in entries:
        token = entry.get("token")
        token = token if isinstance(token, str) else ""
        out["tokens"].append(token)
        out["token_logprobs"].append(entry.get("logprob"))
        top = entry.get("top_logprobs")
        out["top_logprobs"].append({t["token"]: t.get("logprob") for t in top if isinstance(t, dict)
                                    and isinstance(t.get("token"), str)} if isinstance(top, list) else {})
        out["text_offset"].append(offset)
        offset += len(token)
    return out, offset


def chat_to_completion(data: JSON, model: str, legacy: Legacy) -> JSON:
    """A chat.completion -> a text_completion (usage is the caller's)."""
    choices = []
    for i, choice in enumerate(data.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        text = content_text(message.get("content")) if isinstance(message, dict) else ""
        choices.append({"text": (legacy.prompt if legacy.echo else "") + text, "index": choice.get("index", i),
                        "logprobs": legacy_logprobs(logprob_entries(choice), 0)[0] if legacy.logprobs else None,
                        "finish_reason": finish_reason(choice.get("finish_reason"))})
    created = data.get("created")
    return {"id": completion_id(data.get("id")), "object": "text_completion",
            "created": created if isinstance(created, int) else int(time.time()), "model": model,
            "system_fingerprint": data.get("system_fingerprint"), "choices": choices}


@dataclass
class CompletionChunks:
    """Chat chunks -> text_completion chunks: one choice entry per upstream choice delta that says something."""

    model: str
    legacy: Legacy
    id: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    offsets: dict[Any, int] = field(default_factory=dict)   # choice index -> text length so far (logprobs)

    def convert(self, chunk: JSON) -> JSON | None:
        if self.id is None:
            self.id = completion_id(chunk.get("id"))
            created = chunk.get("created")
            self.created = created if isinstance(created, int) else self.created
        choices = []
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                entry = self._choice(choice)
                if entry is not None:
                    choices.append(entry)
        if not choices:
            return None
        return {**self.head(), "choices": choices}

    def head(self) -> JSON:
        return {"id": self.id or completion_id(None), "object": "text_completion", "created": self.created,
                "model": self.model}

    def _choice(self, choice: JSON) -> JSON | None:
        index = choice.get("index", 0)
        delta = choice.get("delta")
        text = content_text(delta.get("content")) if isinstance(delta, dict) else ""
        first = index not in self.offsets
        if first and self.legacy.echo:
            text = self.legacy.prompt + text
        logprobs = None
        if self.legacy.logprobs:
            logprobs, self.offsets[index] = legacy_logprobs(logprob_entries(choice), self.offsets.get(index, 0))
        else:
            self.offsets[index] = self.offsets.get(index, 0) + len(text)
        reason = finish_reason(choice.get("finish_reason"))
        if not text and reason is None and not (logprobs and logprobs["tokens"]):
            return None
        return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason}
