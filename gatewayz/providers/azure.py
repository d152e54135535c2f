"""Azure OpenAI: OpenAI's wire under Azure's addressing and auth.

Two addressing schemes, chosen by the `api_version` option:
- a dated version (default 2024-10-21): `{base}/openai/deployments/{deployment}/{operation}?api-version=V`,
  where the deployment is the route's upstream model id (a model's `providers: - {provider: azure,
  model: my-gpt4o-deployment}`) and the body carries no model;
- `v1`: the v1 API, `{base}/openai/v1/{operation}` with the model (deployment name) in the body.
Auth is the resource's key in `api-key`, or a Microsoft Entra token as `Authorization: Bearer` when the
`entra_token` option is set. Answers, streams and errors are OpenAI's (Azure adds content-filter fields,
which pass through)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from gatewayz.providers.adapter import Form, Outgoing
from gatewayz.providers.openai_wire import OpenAIAdapter, base_headers, multipart, upstream_body
from gatewayz.providers.spec import ProviderSpec
from gatewayz.routing.planner import GATEWAY_FIELDS

DEFAULT_API_VERSION = "2024-10-21"


class AzureAdapter(OpenAIAdapter):
    wire = "azure"

    def __init__(self, spec: ProviderSpec) -> None:
        super().__init__(spec)
        self.api_version = spec.options.get("api_version") or DEFAULT_API_VERSION
        token = spec.options.get("entra_token")
        auth = {"authorization": f"Bearer {token}"} if token else {"api-key": spec.api_key} if spec.api_key else {}
        self.headers = base_headers(spec, auth)
        root = spec.base_url.removesuffix("/openai")
        self.v1 = self.api_version == "v1"
        self.root = root + ("/openai/v1" if self.v1 else "/openai/deployments/")

    def address(self, deployment: str, operation: str) -> str:
        if self.v1:
            return f"{self.root}/{operation}"
        return f"{self.root}{quote(deployment, safe='')}/{operation}?api-version={self.api_version}"

    async def request(self, body: dict[str, Any], upstream_model: str, stream: bool) -> Outgoing:
        # With a dated version the deployment in the URL names the model; the body carries none.
        payload = orjson.dumps(upstream_body(body, upstream_model if self.v1 else None, stream))
        return Outgoing(self.address(upstream_model, "chat/completions"), self.headers, payload)

    async def operation(self, op: str, body: dict[str, Any] | None, form: Form | None,
                        upstream_model: str) -> Outgoing:
        url = self.address(upstream_model, op)
        if form is not None:
            data, content_type = multipart(form, upstream_model)
            return Outgoing(url, {**self.headers, "content-type": content_type, "accept": "*/*"}, data)
        out = {k: v for k, v in (body or {}).items() if k not in GATEWAY_FIELDS and k != "model"}
        if self.v1:
            out["model"] = upstream_model
        return Outgoing(url, {**self.headers, "accept": "*/*"}, orjson.dumps(out))


def make(spec: ProviderSpec) -> AzureAdapter:
    return AzureAdapter(spec)
