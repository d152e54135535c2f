"""The non-chat operations as data: which model mode each serves, the most it can cost (the hold), and how
its usage is read from the upstream's answer.

Holds are worst cases computed before any upstream call, like chat's:
- embeddings: one token per byte of the request at most;
- images: `n` images, plus the prompt's tokens, plus IMAGE_TOKENS_BOUND output tokens an image for models
  priced by image tokens;
- transcriptions: audio of at least 8 kbit/s, so at most one millisecond per byte of the file, plus one
  prompt token per 16 bytes and the model's output limit for models priced by tokens;
- speech: the input's characters exactly, plus its bytes as tokens and the model's output limit.
Usage comes from the upstream's report where it gives one; otherwise it is derived from the answer (the
number of images, a WAV header's duration) or estimated (audio at 128 kbit/s) and marked as estimated."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gatewayz.billing.money import media_cost_nanos, token_cost_nanos
from gatewayz.pipeline.context import RequestContext, Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from gatewayz.catalog.service import CatalogEntry, Route

IMAGE_TOKENS_BOUND = 10_000      # output tokens of one generated image at the largest size and quality
AUDIO_BYTES_PER_MS_MIN = 1       # 8 kbit/s: the lowest bitrate we bound a file's duration with
AUDIO_BYTES_PER_MS_TYPICAL = 16  # 128 kbit/s: the estimate when the answer does not say the duration
AUDIO_BYTES_PER_TOKEN_MIN = 16


@dataclass(frozen=True, slots=True)
class Operation:
    name: str            # the endpoint label in metrics and usage records
    path: str            # the upstream path under the provider's base URL
    mode: str            # the catalog mode of the models it serves
    hold: Callable[[RequestContext, CatalogEntry, Route | None], int]
    usage: Callable[[RequestContext, bytes, str], Usage]


def _prices(entry: CatalogEntry, route: Route | None) -> tuple[int, int, int, int, int]:
    units = route.units if route is not None else None
    return (route.input_picos if route else entry.input_picos, route.output_picos if route else entry.output_picos,
            units.image_nanos if units else 0, units.minute_nanos if units else 0,
            units.character_picos if units else 0)


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# ------------------------------------------------------------------------------------------------ embeddings
def embeddings_hold(ctx: RequestContext, entry: CatalogEntry, route: Route | None) -> int:
    price_in, *_ = _prices(entry, route)
    return token_cost_nanos(len(ctx.raw), 0, price_in, 0)


def embeddings_usage(ctx: RequestContext, body: bytes, content_type: str) -> Usage:
    usage = _json(body).get("usage")
    tokens = _count(usage.get("prompt_tokens") or usage.get("total_tokens")) if isinstance(usage, dict) else 0
    if tokens:
        return Usage(prompt_tokens=tokens)
    return Usage(prompt_tokens=-(-len(ctx.raw) // 4), estimated=True)


# ---------------------------------------------------------------------------------------------------- images
def images_requested(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def images_hold(ctx: RequestContext, entry: CatalogEntry, route: Route | None) -> int:
    price_in, price_out, image_nanos, _, _ = _prices(entry, route)
    n = images_requested(ctx.body)
    return token_cost_nanos(len(ctx.raw), n * IMAGE_TOKENS_BOUND, price_in, price_out) + n * image_nanos


def images_usage(ctx: RequestContext, body: bytes, content_type: str) -> Usage:
    data = _json(body)
    items = data.get("data")
    images = len(items) if isinstance(items, list) else 0
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return Usage(prompt_tokens=_count(usage.get("input_tokens")), completion_tokens=_count(usage.get("output_tokens")),
                 images=images)


# ------------------------------------------------------------------------------------------- transcriptions
def transcription_hold(ctx: RequestContext, entry: CatalogEntry, route: Route | None) -> int:
    price_in, price_out, _, minute_nanos, _ = _prices(entry, route)
    size = len(ctx.form.file.data) if ctx.form is not None else len(ctx.raw)
    tokens_in = size // AUDIO_BYTES_PER_TOKEN_MIN + len(ctx.raw)
    return (token_cost_nanos(tokens_in, entry.max_output_tokens, price_in, price_out)
            + media_cost_nanos(0, size // AUDIO_BYTES_PER_MS_MIN, 0, 0, minute_nanos, 0))


def wav_duration_ms(data: bytes) -> int | None:
    """The duration of a PCM WAV file from its header, or None when it is not one."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate, size = 12, 0, None
    while pos + 8 <= len(data):
        chunk, length = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"fmt " and length >= 16:
            byte_rate = struct.unpack("<I", data[pos + 16:pos + 20])[0]
        elif chunk == b"data":
            size = min(length, len(data) - pos - 8)
            break
        pos += 8 + length + (length & 1)
    if not byte_rate or size is None:
        return None
    return int(size * 1000 // byte_rate)


def transcription_usage(ctx: RequestContext, body: bytes, content_type: str) -> Usage:
    data = _json(body) if "json" in content_type else {}
    usage = data.get("usage")
    if isinstance(usage, dict):
        if usage.get("type") == "tokens" or "input_tokens" in usage:
            return Usage(prompt_tokens=_count(usage.get("input_tokens")),
                         completion_tokens=_count(usage.get("output_tokens")))
        seconds = usage.get("seconds")
        if isinstance(seconds, int | float) and seconds >= 0:
            return Usage(audio_ms=round(seconds * 1000))
    duration = data.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration >= 0:
        return Usage(audio_ms=round(duration * 1000))
    audio = ctx.form.file.data if ctx.form is not None else b""
    exact = wav_duration_ms(audio)
    if exact is not None:
        return Usage(audio_ms=exact)
    return Usage(audio_ms=len(audio) // AUDIO_BYTES_PER_MS_TYPICAL, estimated=True)


# ---------------------------------------------------------------------------------------------------- speech
def speech_characters(body: dict[str, Any]) -> int:
    text = body.get("input")
    return len(text) if isinstance(text, str) else 0


def speech_hold(ctx: RequestContext, entry: CatalogEntry, route: Route | None) -> int:
    price_in, price_out, _, _, character_picos = _prices(entry, route)
    out_tokens = entry.max_output_tokens if price_out else 0
    return (token_cost_nanos(len(ctx.raw), out_tokens, price_in, price_out)
            + media_cost_nanos(0, 0, speech_characters(ctx.body), 0, 0, character_picos))


def speech_usage(ctx: RequestContext, body: bytes, content_type: str) -> Usage:
    chars = speech_characters(ctx.body)
    # Audio answers carry no usage: characters are exact, tokens an estimate of the input text.
    return Usage(prompt_tokens=-(-chars // 4), characters=chars)


OPERATIONS = {
    "embeddings": Operation("embeddings", "embeddings", "embedding", embeddings_hold, embeddings_usage),
    "images": Operation("images.generations", "images/generations", "image", images_hold, images_usage),
    "transcriptions": Operation("audio.transcriptions", "audio/transcriptions", "transcription",
                                transcription_hold, transcription_usage),
    "speech": Operation("audio.speech", "audio/speech", "speech", speech_hold, speech_usage),
}
