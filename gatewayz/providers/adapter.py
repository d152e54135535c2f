"""Adapters: the one place a provider's wire format lives.

The pipeline speaks OpenAI chat completions internally (the request body in `RequestContext.body`, answers and
stream chunks in OpenAI's shapes). An adapter turns that request into one upstream's HTTP request and the
upstream's answers, stream and errors back into OpenAI's shapes; the Engine does the HTTP and the failover
classification for every adapter alike. OpenAI-compatible providers share one adapter and differ only in data
(gatewayz/providers/registry.py); native wires (Anthropic, Gemini, Vertex, Bedrock, Cohere, Azure) each have a
module named in WIRES that exposes `make(spec) -> Adapter`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gatewayz.providers.spec import ProviderSpec


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One HTTP request to an upstream (always a POST)."""

    url: str
    headers: dict[str, str]
    data: bytes


class StreamDecoder(Protocol):
    """Feeds raw bytes of an upstream stream; returns what completed: OpenAI chat.completion.chunk objects (as
    dicts, or as the JSON bytes of one, which the OpenAI wire passes through untouched), `{"error": {...}}` for
    an upstream error event, and providers.sse.DONE once the stream is complete. A decoder that meets data it
    cannot read raises nothing: it returns the raw bytes, which the caller logs and counts. When the body
    ends, feed(b"") is called once more: a wire without a terminal event (Gemini) completes the stream then."""

    def feed(self, chunk: bytes) -> list[Any]: ...


class Adapter(Protocol):
    spec: ProviderSpec
    wire: str

    async def request(self, body: dict[str, Any], upstream_model: str, stream: bool) -> Outgoing:
        """The upstream request for an OpenAI-format chat request (gateway-only fields are ignored)."""
        ...

    def response(self, data: Any) -> dict[str, Any]:
        """The upstream's JSON answer as an OpenAI chat.completion; raises providers.engine.AttemptFailed
        ("bad_response") when it is not a valid answer."""
        ...

    def decoder(self) -> StreamDecoder: ...

    def error_body(self, status: int, body: bytes) -> bytes:
        """The upstream's error body (for a client error handed back unchanged in meaning) in OpenAI's shape."""
        ...

    # Optional: `refused(status, body) -> bool`, called for every non-200 answer; True when the status is the
    # provider's fault although it is a 4xx (an invalid key reported as 400, a model error as 424), so the
    # next provider is tried. It may also drop cached credentials the provider just refused.


class MediaAdapter(Adapter, Protocol):
    """An adapter that also serves the non-chat operations (embeddings, images, audio, legacy completions)."""

    async def operation(self, op: str, body: dict[str, Any] | None, form: Form | None,
                        upstream_model: str) -> Outgoing:
        """The upstream request for operation `op` (a path under the base URL, e.g. "embeddings",
        "audio/transcriptions"), from a JSON body or a multipart form."""
        ...


@dataclass(frozen=True, slots=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Form:
    """A multipart request (audio transcription): text fields and one file."""

    fields: dict[str, str]
    file: FilePart


# wire -> module exposing make(spec) -> Adapter. Imported on first use, so a wire costs nothing until used.
WIRES = {
    "openai": "gatewayz.providers.openai_wire",
    "azure": "gatewayz.providers.azure",
    "anthropic": "gatewayz.providers.anthropic.upstream",
    "gemini": "gatewayz.providers.gemini.adapter",
    "vertex": "gatewayz.providers.gemini.adapter",
    "bedrock": "gatewayz.providers.bedrock.adapter",
    "cohere": "gatewayz.providers.cohere",
}


def make_adapter(spec: ProviderSpec) -> Adapter:
    module = importlib.import_module(WIRES[spec.wire])
    adapter: Adapter = module.make(spec)
    return adapter
