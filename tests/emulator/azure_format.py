"""Azure OpenAI wire format: OpenAI's bodies under Azure's addressing and auth.

Routes: ``POST /openai/deployments/{deployment}/chat/completions`` and ``.../embeddings`` (the deployment
names the model; ``api-version`` query parameter required, else 404 like Azure), and the v1 API
``POST /openai/v1/chat/completions`` (model in the body).  Auth: ``api-key: <key>`` or
``Authorization: Bearer <key>`` (an Entra token).  Errors are OpenAI-shaped, as Azure's are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .openai_format import OpenAIFormat
from .wire import Exchange, Route


class AzureFormat(OpenAIFormat):
    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/openai/deployments/{deployment}/chat/completions", self._deployment(self.chat_completions)),
            Route("POST", "/openai/deployments/{deployment}/embeddings", self._deployment(self.embeddings)),
            Route("POST", "/openai/v1/chat/completions", self.chat_completions),
        )

    def authorized(self, request: web.Request, api_key: str) -> bool:
        return request.headers.get("api-key") == api_key or super().authorized(request, api_key)

    def model_of(self, request: web.Request, body: Any) -> str | None:
        return request.match_info.get("deployment") or super().model_of(request, body)

    def _deployment(self, handler: Any) -> Any:
        async def run(exchange: Exchange) -> web.StreamResponse:
            if not exchange.request.query.get("api-version"):
                return self.error(404, "Resource not found")
            if isinstance(exchange.body, dict):
                if "model" in exchange.body:
                    return self.error(400, "Unexpected 'model': the deployment in the URL names the model")
                exchange.body["model"] = exchange.request.match_info["deployment"]
            return await handler(exchange)

        return run
