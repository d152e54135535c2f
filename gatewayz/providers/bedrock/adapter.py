"""The Bedrock Runtime adapter: Converse and ConverseStream, signed with SigV4 or a Bedrock API key.

Options (ProviderConfig.options; the built-in provider reads them from AWS_* variables):
- region (default us-east-1); `{region}` in base_url is replaced by it.
- access_key_id + secret_access_key (+ session_token): SigV4, service "bedrock". For the built-in provider
  api_key is AWS_ACCESS_KEY_ID, so access_key_id may be left out.
- bearer_token, or api_key without a secret_access_key: a Bedrock API key, sent as `Authorization: Bearer`.
  When both are configured the API key wins, as in the AWS SDKs.
A provider with neither (or half a key pair) logs a warning at start and fails every attempt with
"no_credentials", so requests fail over to the model's other providers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from gatewayz.providers.adapter import Outgoing
from gatewayz.providers.bedrock import request as converse_request
from gatewayz.providers.bedrock.response import error_body, to_completion
from gatewayz.providers.bedrock.sigv4 import Credentials, sign, wire_url
from gatewayz.providers.bedrock.stream import ConverseStreamDecoder
from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.spec import ProviderSpec

DEFAULT_REGION = "us-east-1"
SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
log = logging.getLogger("gatewayz.providers.bedrock")


@dataclass(frozen=True, slots=True)
class Auth:
    credentials: Credentials | None = None
    bearer_token: str | None = None
    problem: str | None = None  # why neither is usable


def auth_from(spec: ProviderSpec) -> Auth:
    opts = spec.options
    if opts.get("bearer_token"):
        return Auth(bearer_token=opts["bearer_token"])
    secret = opts.get("secret_access_key")
    key_id = opts.get("access_key_id") or (spec.api_key if secret else None)
    if secret and key_id:
        return Auth(credentials=Credentials(key_id, secret, opts.get("session_token") or None))
    if secret or opts.get("access_key_id"):
        return Auth(problem="SigV4 needs both access_key_id and secret_access_key")
    if spec.api_key:
        return Auth(bearer_token=spec.api_key)
    return Auth(problem="no credentials: set access_key_id + secret_access_key, or a Bedrock API key "
                        "(api_key or bearer_token)")


class BedrockAdapter:
    wire = "bedrock"

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.region = spec.options.get("region") or DEFAULT_REGION
        self.base_url = spec.base_url.replace("{region}", self.region).rstrip("/")
        self.auth = auth_from(spec)
        if self.auth.problem:
            log.warning("bedrock provider %s is unusable: %s", spec.name, self.auth.problem)

    def url(self, model_id: str, stream: bool) -> str:
        """The endpoint as it goes on the wire: the model id is one percent-encoded path segment (an ARN's
        '/' stays %2F), in the form the HTTP client sends, which is also the form signed."""
        path = f"/model/{quote(model_id, safe='')}/{'converse-stream' if stream else 'converse'}"
        return str(wire_url(self.base_url + path))

    async def request(self, body: dict[str, Any], upstream_model: str, stream: bool) -> Outgoing:
        if self.auth.problem:
            raise AttemptFailed("no_credentials", 401)
        try:
            payload = orjson.dumps(converse_request.converse_body(body, upstream_model))
        except converse_request.Unsupported as exc:
            # 400: the input, not the provider, is at fault (keeps Bedrock's health statistics clean).
            raise AttemptFailed(f"unsupported: {exc}", 400) from None
        url = self.url(upstream_model, stream)
        headers = {"content-type": "application/json", "accept": EVENT_STREAM if stream else "application/json"}
        if self.auth.credentials is not None:
            headers.update(sign("POST", url, payload, self.auth.credentials, self.region, SERVICE,
                                extra_signed={"content-type": headers["content-type"]}))
        elif self.auth.bearer_token:
            headers["authorization"] = f"Bearer {self.auth.bearer_token}"
        headers.update(self.spec.headers)
        return Outgoing(url, headers, payload)

    def response(self, data: Any) -> dict[str, Any]:
        completion = to_completion(data)
        if completion is None:
            raise AttemptFailed("bad_response", 200)
        return completion

    def decoder(self) -> ConverseStreamDecoder:
        return ConverseStreamDecoder()

    def refused(self, status: int, body: bytes) -> bool:
        """424 ModelErrorException: the model failed on Bedrock's side; another provider may well succeed."""
        return status == 424

    def error_body(self, status: int, body: bytes) -> bytes:
        return error_body(status, body)


def make(spec: ProviderSpec) -> BedrockAdapter:
    return BedrockAdapter(spec)
