"""The Gemini adapter, for both wires: "gemini" (Google AI Studio, the Gemini API) and "vertex" (Vertex AI).

- gemini: `{base_url}/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, the API key in
  the x-goog-api-key header (base_url defaults to https://generativelanguage.googleapis.com/v1beta). A model
  id with a slash (tunedModels/x, models/x) is used as the resource path.
- vertex: `{base_url}/projects/{project}/locations/{location}/publishers/google/models/{model}:...`, where
  base_url defaults to https://{location}-aiplatform.googleapis.com/v1 ({location} is substituted; the
  "global" location uses https://aiplatform.googleapis.com/v1). Options: project (else the credentials
  file's project), location (default us-central1), access_token or credentials_file (see auth.py). A model
  id starting with projects/ (a tuned model endpoint) or publishers/ is used as the resource path. The
  provider's api_key is not used (the built-in `vertex` provider is enabled by VERTEXAI_PROJECT).

Translation: request.py (OpenAI -> Gemini), response.py (answers and errors back), stream.py (SSE)."""

from __future__ import annotations

from typing import Any

import orjson

from gatewayz.providers.adapter import Outgoing
from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.gemini.auth import AccessTokens
from gatewayz.providers.gemini.request import build_request
from gatewayz.providers.gemini.response import error_body, to_openai
from gatewayz.providers.gemini.stream import GeminiStreamDecoder
from gatewayz.providers.openai_wire import base_headers
from gatewayz.providers.spec import ProviderSpec

DEFAULT_LOCATION = "us-central1"


def vertex_base(base_url: str, location: str) -> str:
    if location == "global":
        base_url = base_url.replace("{location}-", "")
    return base_url.replace("{location}", location)


class GeminiAdapter:
    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.wire = spec.wire
        self._vertex = spec.wire == "vertex"
        self._location = spec.options.get("location") or DEFAULT_LOCATION
        self._base = vertex_base(spec.base_url, self._location) if self._vertex else spec.base_url
        self.tokens = AccessTokens(spec) if self._vertex else None
        auth = {"x-goog-api-key": spec.api_key} if spec.api_key and not self._vertex else {}
        self._headers = base_headers(spec, auth)

    async def request(self, body: dict[str, Any], upstream_model: str, stream: bool) -> Outgoing:
        payload = orjson.dumps(build_request(body, upstream_model, self.spec.options))
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        if self.tokens is None:
            path = upstream_model if "/" in upstream_model else f"models/{upstream_model}"
            return Outgoing(f"{self._base}/{path}:{method}", self._headers, payload)
        token = await self.tokens.token()
        headers = {**self._headers, "authorization": f"Bearer {token}"}
        return Outgoing(f"{self._base}/{self._vertex_path(upstream_model)}:{method}", headers, payload)

    def _vertex_path(self, model: str) -> str:
        if model.startswith("projects/"):
            return model
        project = self.spec.options.get("project") or (self.tokens.credentials_project if self.tokens else None)
        if not project:
            raise AttemptFailed("config")  # no project option and none in the credentials
        prefix = f"projects/{project}/locations/{self._location}"
        if model.startswith("publishers/"):
            return f"{prefix}/{model}"
        return f"{prefix}/publishers/google/models/{model.removeprefix('models/')}"

    def response(self, data: Any) -> dict[str, Any]:
        return to_openai(data)

    def decoder(self) -> GeminiStreamDecoder:
        return GeminiStreamDecoder()

    def refused(self, status: int, body: bytes) -> bool:
        """Google reports a bad API key as 400 INVALID_ARGUMENT: the provider's fault, not the request's. A
        refused Vertex token is dropped so the next request mints a new one."""
        if status in (401, 403) and self.tokens is not None:
            self.tokens.forget()
        return status == 400 and (b"API_KEY_INVALID" in body or b"API key not valid" in body)

    def error_body(self, status: int, body: bytes) -> bytes:
        return error_body(status, body)


def make(spec: ProviderSpec) -> GeminiAdapter:
    return GeminiAdapter(spec)
