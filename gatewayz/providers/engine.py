"""The one HTTP engine: sends a request shaped by a provider's spec and classifies what comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gatewayz.providers.adapter import Adapter, Outgoing, StreamDecoder
from gatewayz.providers.spec import ProviderSpec
from gatewayz.providers.sse import DONE

# Statuses after which another provider may succeed; anything else 4xx is the client's and goes back as is.
FAILOVER_STATUSES = frozenset({401, 402, 403, 404, 408, 429})


class AttemptFailed(Exception):
    """This provider could not serve the request; the next one may."""

    def __init__(self, kind: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class ClientError:
    """The upstream refused the request itself (a 400 and the like): hand it back unchanged."""

    status: int
    body: bytes
    content_type: str


@dataclass(slots=True)
class JsonReply:
    data: dict[str, Any]


@dataclass(slots=True)
class RawReply:
    """A non-chat answer (embeddings, images, audio, transcripts): the upstream's bytes as sent."""

    body: bytes
    content_type: str


@dataclass(slots=True)
class StreamReply:
    response: aiohttp.ClientResponse
    decoder: StreamDecoder
    first: list[Any]            # events already read (read ahead so an early failure can still fail over)


def retry_after(headers: Any) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            return None
    sec = headers.get("retry-after")
    if sec:
        try:
            return float(sec)
        except ValueError:
            return None  # an HTTP date: treat as unknown
    return None


class Engine:
    def __init__(self, session: aiohttp.ClientSession,
                 propagate: Callable[[dict[str, str]], dict[str, str]] | None = None) -> None:
        self._session = session
        self._timeouts: dict[tuple[str, bool], aiohttp.ClientTimeout] = {}
        # With tracing on: adds the current span's `traceparent` to a copy of an upstream request's headers.
        self._propagate = propagate

    def _headers(self, out: Outgoing) -> dict[str, str]:
        return out.headers if self._propagate is None else self._propagate(out.headers)

    def _timeout(self, spec: ProviderSpec, stream: bool, remaining_s: float) -> aiohttp.ClientTimeout:
        if remaining_s < spec.timeout_s:
            return aiohttp.ClientTimeout(total=None if stream else remaining_s, sock_connect=spec.connect_timeout_s,
                                         sock_read=remaining_s if stream else None)
        key = (spec.name, stream)
        t = self._timeouts.get(key)
        if t is None:
            # Non-stream: the whole exchange within timeout_s. Stream: each read within timeout_s.
            t = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None if stream else spec.timeout_s, sock_connect=spec.connect_timeout_s,
                sock_read=spec.timeout_s if stream else None)
        return t

    async def _send(self, adapter: Adapter, out: Outgoing, stream: bool, remaining_s: float) -> aiohttp.ClientResponse:
        try:
            return await self._session.post(out.url, data=out.data, headers=self._headers(out),
                                            timeout=self._timeout(adapter.spec, stream, remaining_s))
        except TimeoutError:
            raise AttemptFailed("timeout") from None
        except aiohttp.ClientError:
            raise AttemptFailed("connect") from None

    async def chat(self, adapter: Adapter, out: Outgoing, stream: bool,
                   remaining_s: float) -> JsonReply | StreamReply | ClientError:
        resp = await self._send(adapter, out, stream, remaining_s)
        try:
            if resp.status != 200:
                return await self._refusal(adapter, resp)
            if stream:
                return await self._open_stream(resp, adapter.decoder())
            return JsonReply(adapter.response(await self._json(resp)))
        except TimeoutError:
            resp.release()
            raise AttemptFailed("timeout", resp.status) from None
        except aiohttp.ClientError:
            resp.release()
            raise AttemptFailed("read", resp.status) from None

    async def call(self, adapter: Adapter, out: Outgoing, remaining_s: float) -> RawReply | ClientError:
        """One non-chat request (no streaming): the answer's bytes, or the client error, or AttemptFailed."""
        resp = await self._send(adapter, out, False, remaining_s)
        try:
            if resp.status != 200:
                return await self._refusal(adapter, resp)
            body = await resp.read()
            return RawReply(body, resp.headers.get("content-type", "application/octet-stream"))
        except TimeoutError:
            raise AttemptFailed("timeout", resp.status) from None
        except aiohttp.ClientError:
            raise AttemptFailed("read", resp.status) from None
        finally:
            resp.release()

    async def post(self, out: Outgoing, timeout_s: float) -> tuple[int, bytes]:
        """One plain exchange, no failover classification (e.g. an upstream's token counter); raises
        aiohttp.ClientError / TimeoutError."""
        async with self._session.post(out.url, data=out.data, headers=self._headers(out),
                                      timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            return resp.status, await resp.read()

    @staticmethod
    async def _refusal(adapter: Adapter, resp: aiohttp.ClientResponse) -> ClientError:
        body = await resp.read()
        resp.release()
        status = resp.status
        refused = getattr(adapter, "refused", None)  # an adapter may know a 4xx to be the provider's fault
        if status in FAILOVER_STATUSES or status >= 500 or (refused is not None and refused(status, body)):
            raise AttemptFailed(f"http_{status}", status, retry_after(resp.headers))
        return ClientError(status, adapter.error_body(status, body), "application/json")

    @staticmethod
    async def _json(resp: aiohttp.ClientResponse) -> Any:
        raw = await resp.read()
        resp.release()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AttemptFailed("bad_response", 200) from None

    @staticmethod
    async def _open_stream(resp: aiohttp.ClientResponse, decoder: StreamDecoder) -> StreamReply:
        """Read until the first event so that a stream failing before any data still fails over."""
        while True:
            chunk = await resp.content.readany()
            events = decoder.feed(chunk)  # b"" at the end of the body (see StreamDecoder)
            if not chunk and not events:
                resp.release()
                raise AttemptFailed("empty_stream", 200)
            if events:
                if events[0] != DONE and is_error_event(events[0]):
                    resp.release()
                    raise AttemptFailed("stream_error", 200)
                return StreamReply(resp, decoder, events)


def is_error_event(event: Any) -> bool:
    if isinstance(event, dict):
        return "error" in event and not event.get("choices")
    return isinstance(event, bytes) and (event.startswith(b'{"error"') or event.startswith(b'{ "error"'))


async def sleep_within(delay_s: float, deadline: float) -> bool:
    """Sleep for delay_s if the deadline allows it; False when it does not."""
    if time.perf_counter() + delay_s >= deadline:
        return False
    await asyncio.sleep(delay_s)
    return True
