"""AWS event-stream framing for the Bedrock emulator: an encoder, and a streamed response applying the
stream faults the same way ``wire.EventStream`` does for server-sent events.

``encode_message`` writes one message (prelude, string headers, payload, both CRC32s). Events are counted
from 0; ``malformed_chunk_at`` sends that event as a frame whose message CRC is wrong (it arrives whole,
its checksum does not match); ``drop_after_chunks`` and ``chunk_delay_ms`` work as for SSE."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson
from aiohttp import web

from .wire import MALFORMED_EVENT_DATA, EventStream, Exchange

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


def _headers(event: str) -> dict[str, str]:
    """Headers of an event message, or of an exception message for "exception:<type>"."""
    if event.startswith("exception:"):
        return {":exception-type": event.removeprefix("exception:"), ":content-type": "application/json",
                ":message-type": "exception"}
    return {":event-type": event, ":content-type": "application/json", ":message-type": "event"}


def event_message(event_type: str, data: Any, corrupt: bool = False) -> bytes:
    return encode_message(_headers(event_type), orjson.dumps(data), corrupt)


def exception_message(exception_type: str, message: str) -> bytes:
    return encode_message(_headers("exception:" + exception_type), orjson.dumps({"message": message}))


class BinaryEventStream(EventStream):
    """``wire.EventStream`` (its fault handling) with event-stream framing: ``send(data, event_type)`` sends an
    event message, ``send(data, "exception:" + type)`` an exception message, and a malformed event goes out
    as a frame with a bad CRC. ``finish()`` sends no terminator: the stream just ends."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(exchange)
        self._response.headers["Content-Type"] = CONTENT_TYPE

    async def finish(self, terminator: bytes | None = None) -> web.StreamResponse:
        return await super().finish(None)

    def frame(self, payload: bytes, event: str | None) -> bytes:
        return encode_message(_headers(event or ""), payload, corrupt=payload == MALFORMED_EVENT_DATA)
