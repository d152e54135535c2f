"""AWS event-stream framing for the Bedrock emulator: an encoder, and a streamed response applying the
stream faults the same way ``wire.EventStream`` does for server-sent events.

``encode_message`` writes one message (prelude, string headers, payload, both CRC32s). Events are counted
from 0; ``malformed_chunk_at`` sends that event with a wrong message CRC (the frame arrives whole, its
checksum does not match); ``drop_after_chunks`` closes the connection after that many events, or at the
end of the stream if it is shorter; ``chunk_delay_ms`` sleeps before every event but the first."""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any

import orjson
from aiohttp import web

from .wire import Exchange, close_connection

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7


def encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += bytes([len(raw_name)]) + raw_name + bytes([_STRING]) + struct.pack(">H", len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes, corrupt: bool = False) -> bytes:
    """One event-stream message; ``corrupt`` flips the message CRC."""
    head = encode_headers(headers)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    crc = zlib.crc32(body) ^ (0xFFFFFFFF if corrupt else 0)
    return body + struct.pack(">I", crc)


def event_message(event_type: str, data: Any, corrupt: bool = False) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps(data), corrupt)


def exception_message(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json",
               ":message-type": "exception"}
    return encode_message(headers, orjson.dumps({"message": message}))


class BinaryEventStream:
    """A streamed ``application/vnd.amazon.eventstream`` response with the emulator's stream faults."""

    def __init__(self, exchange: Exchange) -> None:
        self._request = exchange.request
        self._fault = exchange.fault
        self._response = web.StreamResponse(status=200, headers={"Content-Type": CONTENT_TYPE})
        self.sent = 0
        self.dropped = False

    async def open(self) -> None:
        await self._response.prepare(self._request)

    async def send(self, event_type: str, data: Any) -> None:
        await self._send_frame(lambda corrupt: event_message(event_type, data, corrupt))

    async def send_exception(self, exception_type: str, message: str) -> None:
        await self._send_frame(lambda corrupt: exception_message(exception_type, message))

    async def finish(self) -> web.StreamResponse:
        if not self.dropped and self._fault.drop_after_chunks is not None:
            self._drop()
        if not self.dropped:
            await self._response.write_eof()
        return self._response

    async def _send_frame(self, build: Any) -> None:
        if self.dropped:
            return
        if self._fault.drop_after_chunks is not None and self.sent >= self._fault.drop_after_chunks:
            self._drop()
            return
        if self.sent > 0 and self._fault.chunk_delay_ms:
            await asyncio.sleep(self._fault.chunk_delay_ms / 1000.0)
        frame = build(self.sent == self._fault.malformed_chunk_at)
        try:
            await self._response.write(frame)
        except ConnectionError:
            self.dropped = True
        self.sent += 1

    def _drop(self) -> None:
        self.dropped = True
        close_connection(self._request)
