"""The native Cohere v2 Chat upstream: POST {base_url}/chat (base https://api.cohere.com/v2), bearer key.

Translation: request (+ messages) outbound, response and stream inbound; each module's docstring lists its
mapping and decisions. The adapter takes no options (an unknown one is a startup error). An input Cohere
cannot take raises InvalidRequest (400 to the client, no failover: the request itself is impossible there,
and the message names the field). Errors come back as OpenAI error bodies with Cohere's message (Cohere's
own shape is {"id", "message"}, or just {"message"}).
"""

from __future__ import annotations

from typing import Any

import orjson

from gatewayz.providers.adapter import Outgoing
from gatewayz.providers.cohere.request import build_body
from gatewayz.providers.cohere.response import GenerationFailed, NotAChat, chat_completion
from gatewayz.providers.cohere.stream import CohereStreamDecoder
from gatewayz.providers.openai_wire import base_headers, openai_error_body
from gatewayz.providers.spec import ProviderSpec


class CohereAdapter:
    wire = "cohere"

    def __init__(self, spec: ProviderSpec) -> None:
        if spec.options:
            raise ValueError(f"provider {spec.name}: the cohere wire takes no options (got {sorted(spec.options)})")
        self.spec = spec
        self.url = spec.base_url + "/chat"
        self.headers = base_headers(spec, {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {})

    async def request(self, body: dict[str, Any], upstream_model: str, stream: bool) -> Outgoing:
        return Outgoing(self.url, self.headers, orjson.dumps(build_body(body, upstream_model, stream)))

    def response(self, data: Any) -> dict[str, Any]:
        from gatewayz.providers.engine import AttemptFailed

        try:
            return chat_completion(data)
        except NotAChat:
            raise AttemptFailed("bad_response", 200) from None
        except GenerationFailed as exc:
            raise AttemptFailed(f"generation_{exc.reason.lower()}", 200) from None

    def decoder(self) -> CohereStreamDecoder:
        return CohereStreamDecoder()

    def error_body(self, status: int, body: bytes) -> bytes:
        return openai_error_body(status, body)


def make(spec: ProviderSpec) -> CohereAdapter:
    return CohereAdapter(spec)
