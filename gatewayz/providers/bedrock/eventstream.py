"""An incremental decoder for AWS event streams (application/vnd.amazon.eventstream), the binary framing of
Bedrock's ConverseStream.

A message is: total length (uint32), headers length (uint32), CRC32 of those 8 bytes, the headers, the
payload, and a CRC32 of everything before it; integers big-endian. A header is a 1-byte name length, the
name, a 1-byte type and a value whose size the type gives (strings and byte arrays carry a 2-byte length).
Both CRCs are checked. Once a frame is corrupt nothing after it can be trusted (the length that would
find the next frame is suspect), so the decoder stops: everything from the bad frame on is handed back
as raw bytes."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

PRELUDE_LENGTH = 12
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + 4
MAX_HEADERS_LENGTH = 128 * 1024
MAX_MESSAGE_LENGTH = 24 * 1024 * 1024 + MAX_HEADERS_LENGTH + MIN_MESSAGE_LENGTH

_UINT32 = struct.Struct(">I")
# header type -> (struct for fixed-size values, or None for the length-prefixed string / bytes)
_FIXED = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"), 5: struct.Struct(">q"),
          8: struct.Struct(">q")}
_BOOL_TRUE, _BOOL_FALSE, _BYTES, _STRING, _UUID = 0, 1, 6, 7, 9


class FrameError(ValueError):
    """The bytes are not a valid event-stream message."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, Any]
    payload: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


def parse_headers(data: bytes) -> dict[str, Any]:
    """Header block -> {name: value}: bool, int (byte/short/int/long, timestamp in ms), bytes, str, or
    bytes(16) for a UUID."""
    headers: dict[str, Any] = {}
    pos, end = 0, len(data)
    while pos < end:
        name_len = data[pos]
        pos += 1
        if pos + name_len >= end:  # the name, then at least the type byte
            raise FrameError("truncated header")
        name = data[pos:pos + name_len].decode("utf-8", "strict")
        pos += name_len
        kind = data[pos]
        pos += 1
        value: Any
        if kind in (_BOOL_TRUE, _BOOL_FALSE):
            value = kind == _BOOL_TRUE
        elif kind in _FIXED:
            fmt = _FIXED[kind]
            if pos + fmt.size > end:
                raise FrameError("truncated header value")
            (value,) = fmt.unpack_from(data, pos)
            pos += fmt.size
        elif kind in (_BYTES, _STRING):
            if pos + 2 > end:
                raise FrameError("truncated header value")
            size = int.from_bytes(data[pos:pos + 2], "big")
            pos += 2
            if pos + size > end:
                raise FrameError("truncated header value")
            raw = data[pos:pos + size]
            pos += size
            value = raw.decode("utf-8", "strict") if kind == _STRING else raw
        elif kind == _UUID:
            if pos + 16 > end:
                raise FrameError("truncated header value")
            value = data[pos:pos + 16]
            pos += 16
        else:
            raise FrameError(f"unknown header type {kind}")
        if name in headers:
            raise FrameError(f"duplicate header {name!r}")
        headers[name] = value
    return headers


class EventStreamDecoder:
    """feed(bytes) -> the messages completed so far, in order. After a corrupt frame, `broken` is set and
    feed returns only raw bytes: the unparsed remainder once, then every later chunk as it comes."""

    __slots__ = ("_buf", "broken", "error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.broken = False
        self.error: str | None = None

    def feed(self, chunk: bytes) -> list[Message | bytes]:
        if self.broken:
            return [chunk] if chunk else []
        self._buf += chunk
        out: list[Message | bytes] = []
        while len(self._buf) >= PRELUDE_LENGTH:
            total, headers_len, prelude_crc = struct.unpack_from(">III", self._buf, 0)
            try:
                _check_prelude(self._buf, total, headers_len, prelude_crc)
            except FrameError as exc:
                out.append(self._break(str(exc)))
                break
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            try:
                out.append(decode_frame(frame, headers_len))
            except FrameError as exc:
                out.append(self._break(str(exc)))
                break
            del self._buf[:total]
        return out

    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame (a stream that ends with pending bytes was cut)."""
        return len(self._buf)

    def _break(self, reason: str) -> bytes:
        self.broken, self.error = True, reason
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


def _check_prelude(buf: bytearray, total: int, headers_len: int, prelude_crc: int) -> None:
    if zlib.crc32(bytes(buf[:8])) != prelude_crc:
        raise FrameError("prelude CRC mismatch")
    if total < MIN_MESSAGE_LENGTH or total > MAX_MESSAGE_LENGTH:
        raise FrameError(f"invalid message length {total}")
    if headers_len > MAX_HEADERS_LENGTH or headers_len > total - MIN_MESSAGE_LENGTH:
        raise FrameError(f"invalid headers length {headers_len}")


def decode_frame(frame: bytes, headers_len: int) -> Message:
    """One complete frame (its prelude already checked) -> Message; FrameError on a CRC or header error."""
    (message_crc,) = _UINT32.unpack_from(frame, len(frame) - 4)
    if zlib.crc32(frame[:-4]) != message_crc:
        raise FrameError("message CRC mismatch")
    try:
        headers = parse_headers(frame[PRELUDE_LENGTH:PRELUDE_LENGTH + headers_len])
    except (UnicodeDecodeError, IndexError) as exc:
        raise FrameError(f"unreadable headers: {exc}") from None
    return Message(headers, frame[PRELUDE_LENGTH + headers_len:-4])
