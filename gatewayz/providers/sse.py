"""Server-sent events: an incremental parser for upstream streams and the writer for client streams."""

from __future__ import annotations

import orjson

DONE = b"[DONE]"


class SSEParser:
    """Feeds raw bytes, yields the data payload of each complete event (multi-line data joined by \\n).

    Comments (lines starting with ':') and events without data are skipped; `event:` names are kept in
    `last_event` for protocols that use them."""

    __slots__ = ("_buf", "last_event")

    def __init__(self) -> None:
        self._buf = b""
        self.last_event: bytes | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        carry = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):  # maybe half of a CRLF split across reads
                buf, carry = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, rest = buf.split(b"\n\n")
        self._buf = rest + carry
        out: list[bytes] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                out.append(block[6:])  # the common case: one data line
            elif block:
                data = _event_data(block, self)
                if data is not None:
                    out.append(data)
        return out

    def tail(self) -> bytes:
        """Whatever was left without a terminating blank line (a truncated stream)."""
        return self._buf


def _event_data(block: bytes, parser: SSEParser) -> bytes | None:
    parts: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            parts.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            parser.last_event = line[6:].strip()
    return b"\n".join(parts) if parts else None


def event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def json_event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"
