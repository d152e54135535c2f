"""OpenAI wire format: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``;
auth is ``Authorization: Bearer <key>``.  Chat behaviour and token accounting
are documented in ``openai_chat.py``.

Embeddings: one vector per input (a string, a list of strings, a token array or
a list of token arrays), dimension ``dimensions`` (default 8), unit length,
derived from a SHA-256 of the text (directives removed; a token array hashes as
its space-joined numbers).  ``encoding_format: "base64"`` returns the
little-endian float32 bytes base64-encoded - the same values as ``"float"``.
``prompt_tokens`` = total words over all inputs (token arrays: their length).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from . import openai_media
from .faults import strip_directives
from .openai_chat import completion_body, plan_chat, stream_chunks, validate_chat
from .textgen import count_words, embedding_vector, pack_float32
from .wire import EventStream, Exchange, Route

DEFAULT_EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 8192
MODEL_CREATED = 1_700_000_000


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def error_kind(status: int) -> tuple[str, str | None]:
    """OpenAI's (type, code) for an error with HTTP ``status``."""
    if status == 401:
        return "authentication_error", "invalid_api_key"
    if status == 402:
        return "insufficient_quota", "insufficient_quota"
    if status == 403:
        return "permission_error", "permission_denied"
    if status == 404:
        return "invalid_request_error", "not_found"
    if status == 429:
        return "requests", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    return "invalid_request_error", None


def _embedding_inputs(value: Any) -> list[str] | None:
    """The texts to embed, or None if ``input`` has no acceptable shape."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, str) for item in value):
        return list(value)
    if all(isinstance(item, int) for item in value):
        return [" ".join(str(token) for token in value)]
    if all(isinstance(item, list) and item and all(isinstance(t, int) for t in item) for item in value):
        return [" ".join(str(token) for token in item) for item in value]
    return None


def _validate_embeddings(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    if _embedding_inputs(body.get("input")) is None:
        return "'input' must be a non-empty string, array of strings, or array of token arrays"
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS
    ):
        return f"Invalid 'dimensions': must be an integer between 1 and {MAX_EMBEDDING_DIMENSIONS}"
    if body.get("encoding_format", "float") not in ("float", "base64", None):
        return "Invalid 'encoding_format': must be 'float' or 'base64'"
    return None


class OpenAIFormat:
    """The OpenAI-compatible routes."""

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/v1/chat/completions", self.chat_completions),
            Route("POST", "/v1/embeddings", self.embeddings),
            Route("POST", "/v1/images/generations", lambda ex: openai_media.images(self, ex)),
            Route("POST", "/v1/audio/transcriptions", lambda ex: openai_media.transcriptions(self, ex)),
            Route("POST", "/v1/audio/speech", lambda ex: openai_media.speech(self, ex)),
            Route("GET", "/v1/models", self.list_models),
            Route("GET", "/v1/models/{model_id:.+}", self.get_model),
        )

    def authorized(self, request: web.Request, api_key: str) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == api_key

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        kind, default_code = error_kind(status)
        payload = {"error": {"message": message, "type": kind, "param": None, "code": code or default_code}}
        return json_response(payload, status)

    def model_of(self, request: web.Request, body: Any) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    def wants_stream(self, request: web.Request, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    async def not_found(self, exchange: Exchange) -> web.StreamResponse:
        request = exchange.request
        return self.error(404, f"Unknown request URL: {request.method} {request.path}.", "unknown_url")

    # -------------------------------------------------------------------- chat
    async def chat_completions(self, exchange: Exchange) -> web.StreamResponse:
        problem = validate_chat(exchange.body)
        if problem is not None:
            return self.error(400, problem)
        plan = plan_chat(exchange.body, exchange.fault)
        if not self.wants_stream(exchange.request, exchange.body):
            return json_response(completion_body(plan))
        options = exchange.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        stream = EventStream(exchange)
        await stream.open()
        for chunk in stream_chunks(plan, include_usage):
            await stream.send(chunk)
            if stream.dropped:
                break
        return await stream.finish()

    # -------------------------------------------------------------- embeddings
    async def embeddings(self, exchange: Exchange) -> web.StreamResponse:
        body = exchange.body
        problem = _validate_embeddings(body)
        if problem is not None:
            return self.error(400, problem)
        texts = _embedding_inputs(body["input"]) or []
        dimensions = body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embedding_vector(strip_directives(text), dimensions)
            encoded: Any = base64.b64encode(pack_float32(vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(count_words(text) for text in texts)
        usage = (
            None
            if exchange.fault.omit_usage
            else exchange.fault.usage
            or {
                "prompt_tokens": tokens,
                "total_tokens": tokens,
            }
        )
        payload: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if usage is not None:
            payload["usage"] = usage
        return json_response(payload)

    # ------------------------------------------------------------------ models
    def _model(self, exchange: Exchange, model_id: str) -> dict[str, Any]:
        owner = f"emulator-{exchange.emulator.name}"
        return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": owner}

    async def list_models(self, exchange: Exchange) -> web.StreamResponse:
        models = [self._model(exchange, m) for m in exchange.emulator.models()]
        return json_response({"object": "list", "data": models})

    async def get_model(self, exchange: Exchange) -> web.StreamResponse:
        model_id = exchange.request.match_info["model_id"]
        if model_id not in exchange.emulator.models():
            return self.error(404, f"The model '{model_id}' does not exist", "model_not_found")
        return json_response(self._model(exchange, model_id))
