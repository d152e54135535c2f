"""Contract between the emulator core and its wire-format modules.

A wire format (OpenAI today; Anthropic Messages, Gemini, Bedrock, Cohere later)
is an object satisfying :class:`WireFormat`: it lists its routes, knows how its
provider authenticates, how it shapes error bodies, which model a request
targets and whether it asks for a stream.  The core (``server.py``) does
everything else: request log, fault selection, latency/hang/status/body faults,
auth enforcement.  Handlers receive an :class:`Exchange` and stream through an
:class:`EventStream`, which applies the stream-level faults uniformly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson
from aiohttp import web

from .faults import Fault

if TYPE_CHECKING:
    from .server import Emulator

MALFORMED_EVENT_DATA = b"{not json"


@dataclass
class Exchange:
    """One request as seen by a format handler."""

    request: web.Request
    body: Any
    """The parsed JSON body (None when the request had no body)."""
    fault: Fault
    """The fault chosen for this request (an empty ``Fault()`` when none)."""
    emulator: Emulator


Handler = Callable[[Exchange], Awaitable[web.StreamResponse]]
RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Route(NamedTuple):
    method: str
    path: str
    handler: Handler


class WireFormat(Protocol):
    """What a provider wire format must provide to be served by the emulator."""

    def routes(self) -> Sequence[Route]:
        """The HTTP routes of this format."""
        ...

    def authorized(self, request: web.Request, api_key: str) -> bool:
        """Whether the request carries ``api_key`` the way this provider expects."""
        ...

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        """An error response shaped the way this provider shapes errors."""
        ...

    def model_of(self, request: web.Request, body: Any) -> str | None:
        """The model a request targets (used for per-model queued faults and the model list)."""
        ...

    def wants_stream(self, request: web.Request, body: Any) -> bool:
        """Whether the request asks for a streamed answer."""
        ...

    async def not_found(self, exchange: Exchange) -> web.StreamResponse:
        """Answer for a path no route matches."""
        ...


def close_connection(request: web.Request) -> None:
    """Close the client connection (buffered bytes are flushed, no terminator is sent)."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()


class EventStream:
    """A server-sent-events response that applies the stream faults.

    Events are counted from 0 (the terminator is not an event).  ``chunk_delay_ms``
    sleeps before every event but the first; ``malformed_chunk_at`` replaces that
    event's data by invalid JSON; ``drop_after_chunks`` closes the connection once
    that many events were sent - or at the end of the stream, before the
    terminator, if the stream is shorter.
    """

    def __init__(self, exchange: Exchange) -> None:
        self._request = exchange.request
        self._fault = exchange.fault
        self._response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"},
        )
        self.sent = 0
        self.dropped = False

    async def open(self) -> None:
        """Send the status line and headers."""
        await self._response.prepare(self._request)

    async def send(self, data: Any, event: str | None = None) -> None:
        """Send one event whose data is ``data`` serialized as JSON."""
        if self.dropped:
            return
        if self._fault.drop_after_chunks is not None and self.sent >= self._fault.drop_after_chunks:
            self._drop()
            return
        payload = MALFORMED_EVENT_DATA if self.sent == self._fault.malformed_chunk_at else orjson.dumps(data)
        await self._write(payload, event)
        self.sent += 1

    async def finish(self, terminator: bytes | None = b"[DONE]") -> web.StreamResponse:
        """End the stream with ``terminator`` (unless a drop fault closes it first)."""
        if not self.dropped and self._fault.drop_after_chunks is not None:
            self._drop()
        if not self.dropped and terminator is not None:
            await self._write(terminator, None)
        return self._response

    async def _write(self, payload: bytes, event: str | None) -> None:
        if self.sent > 0 and self._fault.chunk_delay_ms:
            await asyncio.sleep(self._fault.chunk_delay_ms / 1000.0)
        try:
            await self._response.write(self.frame(payload, event))
        except ConnectionError:
            self.dropped = True

    def frame(self, payload: bytes, event: str | None) -> bytes:
        """One event on the wire (formats with another framing override this)."""
        head = f"event: {event}\n".encode() if event else b""
        return head + b"data: " + payload + b"\n\n"

    def _drop(self) -> None:
        self.dropped = True
        close_connection(self._request)
