"""Deterministic "model" behaviour shared by every wire format.

Tokens
------
The emulator's tokenizer is deliberately trivial so tests can predict usage:
**one token = one whitespace-separated word** (``len(text.split())``).

* Streaming splits text into word pieces that keep their leading whitespace
  (``"Echo: hi there"`` -> ``"Echo:"``, ``" hi"``, ``" there"``), so the pieces
  concatenate back to the exact text.
* ``max_tokens`` keeps the first N words (original spacing preserved).
* Prompt/completion accounting formulas are documented by each format module.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Sequence
from typing import Any

_PIECE_RE = re.compile(r"\s*\S+")


def count_words(text: str | None) -> int:
    """Number of emulator tokens (whitespace-separated words) in ``text``."""
    return len(text.split()) if text else 0


def word_pieces(text: str) -> list[str]:
    """Split ``text`` into word pieces that keep their leading whitespace."""
    pieces = _PIECE_RE.findall(text)
    rest = text[sum(len(p) for p in pieces) :]
    if rest:
        pieces.append(rest)
    return pieces


def truncate_words(text: str, limit: int | None) -> tuple[str, bool]:
    """Keep the first ``limit`` words of ``text``; returns (text, was_truncated)."""
    if limit is None:
        return text, False
    pieces = _PIECE_RE.findall(text)
    if len(pieces) <= limit:
        return text, False
    return "".join(pieces[: max(limit, 0)]), True


def apply_stop(text: str, stop: str | Sequence[str] | None) -> tuple[str, bool]:
    """Cut ``text`` at the earliest occurrence of any stop sequence; returns (text, was_cut)."""
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    cut = min((i for s in sequences if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def token_logprob(token: str, position: int) -> float:
    """A deterministic, plausible log-probability for ``token`` at ``position``."""
    spread = zlib.crc32(f"{position}:{token}".encode()) % 2000
    return -round(0.0005 + spread / 1000.0, 4)


def arguments_for(parameters: Any, value: str) -> str:
    """A JSON-object string with one string value per property in a JSON schema."""
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    names = list(properties) if isinstance(properties, dict) else []
    return json.dumps({name: value or name for name in names})


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A unit-length vector derived from a hash of ``text``, exactly representable as float32."""
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        raw.extend(int.from_bytes(digest[i : i + 4], "little") / 2**31 - 1.0 for i in range(0, 32, 4))
        block += 1
    raw = raw[:dimensions]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    packed = struct.pack(f"<{dimensions}f", *(x / norm for x in raw))
    return list(struct.unpack(f"<{dimensions}f", packed))


def pack_float32(vector: Sequence[float]) -> bytes:
    """Little-endian float32 encoding of ``vector`` (the ``base64`` embedding format before b64)."""
    return struct.pack(f"<{len(vector)}f", *vector)
