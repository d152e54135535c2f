"""Anthropic Messages API <-> OpenAI chat completions: the public API of the translation.

- `messages_to_openai`: a POST /v1/messages body -> an OpenAI chat.completions body (TranslationError
  when the request is invalid; `.param` names the field). What is dropped is listed in `request`.
- `openai_to_message`: a chat.completion -> an Anthropic Message.
- `StreamTranslator` + `sse`: chat.completion.chunk dicts -> Anthropic stream events -> SSE bytes.
- `count_tokens_estimate`: POST /v1/messages/count_tokens without a tokenizer.
- `error_body`: Anthropic's error shape for an HTTP status.
"""

from __future__ import annotations

from gatewayz.providers.anthropic.request import TranslationError, count_tokens_estimate, messages_to_openai
from gatewayz.providers.anthropic.response import error_body, openai_to_message
from gatewayz.providers.anthropic.stream import StreamTranslator, sse

__all__ = [
    "StreamTranslator",
    "TranslationError",
    "count_tokens_estimate",
    "error_body",
    "messages_to_openai",
    "openai_to_message",
    "sse",
]
