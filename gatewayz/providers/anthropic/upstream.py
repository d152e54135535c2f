"""The native Anthropic Messages upstream: POST {base_url}/messages with x-api-key and anthropic-version.

Translation: upstream_request (+ upstream_messages) outbound, upstream_response and upstream_stream inbound.
Provider options (`options:` in the provider config):
- version: the anthropic-version header (default 2023-06-01);
- max_tokens: the max_tokens sent when the client gave none (default 4096; Anthropic requires one);
- json_mode: how response_format JSON is obtained, `tool` (default, a forced tool: every model) or `native`
  (output_config.format json_schema: structured outputs, newer models).
An input Anthropic cannot take raises InvalidRequest (400 to the client, no failover): it is the client's
request that is impossible there, and the message says which field.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gatewayz.errors import GatewayError
from gatewayz.providers.adapter import Outgoing
from gatewayz.providers.anthropic.upstream_request import RequestOptions, build_body
from gatewayz.providers.anthropic.upstream_response import NotAMessage, chat_completion, error_body
from gatewayz.providers.anthropic.upstream_stream import AnthropicStreamDecoder
from gatewayz.providers.spec import ProviderSpec

if TYPE_CHECKING:
    from gatewayz.container import Container
    from gatewayz.keys.restrictions import Restrictions
    from gatewayz.providers.engine import Engine

log = logging.getLogger("gatewayz.providers.anthropic")
DEFAULT_VERSION = "2023-06-01"
OPTIONS = ("version", "max_tokens", "json_mode")
# What POST /messages/count_tokens accepts of a Messages request.
COUNT_FIELDS = ("messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "output_config")
COUNT_TIMEOUT_S = 10.0


def parse_options(spec: ProviderSpec) -> RequestOptions:
    """The adapter's options; a ValueError (at startup) for an unknown or invalid one."""
    options = spec.options
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"provider {spec.name}: unknown anthropic option(s) {unknown} (known: {list(OPTIONS)})")
    max_tokens = options.get("max_tokens", "4096")
    if not max_tokens.isdigit() or int(max_tokens) < 1:
        raise ValueError(f"provider {spec.name}: option max_tokens must be a positive integer")
    json_mode = options.get("json_mode", "tool")
    if json_mode not in ("tool", "native"):
        raise ValueError(f"provider {spec.name}: option json_mode must be tool or native")
    return RequestOptions(max_tokens=int(max_tokens), json_mode=json_mode)


class AnthropicUpstream:
    wire = "anthropic"

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.options = parse_options(spec)
        self.url = spec.base_url + "/messages"
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "anthropic-version": spec.options.get("version", DEFAULT_VERSION)}
        if spec.api_key:
            headers["x-api-key"] = spec.api_key
        headers.update(spec.headers)
        self.headers = headers

    async def request(self, body: dict[str, Any], upstream_model: str, stream: bool) -> Outgoing:
        payload = build_body(body, upstream_model, stream, self.options)
        return Outgoing(self.url, self.headers, orjson.dumps(payload))

    def response(self, data: Any) -> dict[str, Any]:
        from gatewayz.providers.engine import AttemptFailed

        try:
            return chat_completion(data)
        except NotAMessage:
            raise AttemptFailed("bad_response", 200) from None

    def decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def error_body(self, status: int, body: bytes) -> bytes:
        return error_body(status, body)

    async def count_tokens(self, engine: Engine, body: dict[str, Any], upstream_model: str) -> int | None:
        """Anthropic's own count of a Messages request's input tokens (POST /messages/count_tokens), or None
        when it could not be had (the caller then estimates)."""
        payload = {k: body[k] for k in COUNT_FIELDS if k in body}
        payload["model"] = upstream_model
        out = Outgoing(self.url + "/count_tokens", self.headers, orjson.dumps(payload))
        try:
            status, raw = await engine.post(out, COUNT_TIMEOUT_S)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("count_tokens at %s failed: %s", self.spec.name, type(exc).__name__)
            return None
        try:
            tokens = orjson.loads(raw).get("input_tokens") if status == 200 else None
        except (orjson.JSONDecodeError, AttributeError):
            tokens = None
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            log.warning("count_tokens at %s answered HTTP %s without a count", self.spec.name, status)
            return None
        return tokens


def make(spec: ProviderSpec) -> AnthropicUpstream:
    return AnthropicUpstream(spec)


async def native_count(container: Container, body: dict[str, Any], allowed: Restrictions | None) -> int | None:
    """For POST /v1/messages/count_tokens: Anthropic's exact count when the model's first provider is an
    Anthropic upstream (and the key may use the model); None otherwise, or when the upstream gave no count."""
    model = body.get("model")
    if not isinstance(model, str):
        return None
    try:
        entry = container.catalog.resolve(model)
        if allowed is not None:
            allowed.check_model(entry.id, model, *entry.aliases)
    except GatewayError:
        return None
    route = entry.routes[0] if entry.routes else None
    adapter = container.adapters.get(route.provider) if route else None
    if route is None or not isinstance(adapter, AnthropicUpstream):
        return None
    return await adapter.count_tokens(container.engine, body, route.upstream_model)
