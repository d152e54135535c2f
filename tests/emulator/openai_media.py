"""OpenAI media routes: ``/v1/images/generations``, ``/v1/audio/transcriptions``, ``/v1/audio/speech``.

Images: ``n`` (default 1) items; ``response_format: "b64_json"`` gives a tiny PNG base64-encoded, else a URL
``https://emulator.invalid/img/<i>.png``.  A model whose name contains ``token-image`` also reports
``usage`` in tokens (input = words of the prompt, output = 100 per image), like gpt-image-1.

Transcriptions (multipart, with a ``file`` part): the text is ``"Transcript of <filename> (<bytes> bytes)"``.
``response_format`` json (default) → ``{"text", "usage": {"type": "duration", "seconds"}}`` where seconds is
the WAV header's duration, or ``bytes / 16000`` for other files; ``verbose_json`` → also ``duration``,
``language`` and one segment; ``text`` → the plain text; ``srt``/``vtt`` → one cue.  A model whose name
contains ``token-transcribe`` reports ``usage: {"type": "tokens", "input_tokens": bytes // 100,
"output_tokens": words}`` instead (gpt-4o-transcribe style).

Speech: the body must have ``input`` and ``voice``; the answer is ``audio/mpeg`` (or the asked
``response_format``'s type) of ``len(input)`` bytes of a repeating pattern.
"""

from __future__ import annotations

import base64
import struct
from email.parser import BytesParser
from email.policy import default
from typing import Any

import orjson
from aiohttp import web

from .textgen import count_words
from .wire import Exchange

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def parse_form(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body: its text fields and its files (name -> (filename, bytes))."""
    message = BytesParser(policy=default).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[str(name)] = (filename, payload)
        elif name is not None:
            fields[str(name)] = payload.decode()
    return fields, files


def wav_seconds(data: bytes) -> float | None:
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    byte_rate = struct.unpack("<I", data[28:32])[0]
    size = struct.unpack("<I", data[40:44])[0]
    return size / byte_rate if byte_rate else None


async def images(fmt: Any, exchange: Exchange) -> web.StreamResponse:
    body = exchange.body
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return fmt.error(400, "'prompt' is a required property")
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= 10:
        return fmt.error(400, "'n' must be between 1 and 10")
    b64 = body.get("response_format") == "b64_json"
    data = [{"b64_json": base64.b64encode(PNG_1X1).decode()} if b64 else
            {"url": f"https://emulator.invalid/img/{i}.png"} for i in range(n)]
    payload: dict[str, Any] = {"created": 1_700_000_000, "data": data}
    if "token-image" in str(body.get("model", "")):
        words = count_words(body["prompt"])
        payload["usage"] = {"input_tokens": words, "output_tokens": 100 * n, "total_tokens": words + 100 * n}
    return _json(payload)


async def transcriptions(fmt: Any, exchange: Exchange) -> web.StreamResponse:
    request = exchange.request
    if request.content_type != "multipart/form-data":
        return fmt.error(400, "Expected multipart/form-data")
    form, files = parse_form(request.headers["content-type"], await request.read())
    if "file" not in files:
        return fmt.error(400, "'file' is a required property")
    model = form.get("model", "")
    if not model:
        return fmt.error(400, "'model' is a required property")
    exchange.emulator._note_model(model)
    filename, audio = files["file"]
    text = f"Transcript of {filename} ({len(audio)} bytes)"
    seconds = wav_seconds(audio)
    seconds = round(seconds if seconds is not None else len(audio) / 16000, 3)
    fmt_name = form.get("response_format", "json")
    if fmt_name == "text":
        return web.Response(text=text, content_type="text/plain")
    if fmt_name in ("srt", "vtt"):
        cue = f"1\n00:00:00,000 --> 00:00:0{min(int(seconds), 9)},000\n{text}\n"
        return web.Response(text=("WEBVTT\n\n" + cue.replace(",", ".")) if fmt_name == "vtt" else cue,
                            content_type="text/plain")
    if "token-transcribe" in model:
        usage: dict[str, Any] = {"type": "tokens", "input_tokens": len(audio) // 100,
                                 "output_tokens": count_words(text)}
    else:
        usage = {"type": "duration", "seconds": seconds}
    payload: dict[str, Any] = {"text": text, "usage": usage}
    if fmt_name == "verbose_json":
        payload.update(task="transcribe", language="english", duration=seconds,
                       segments=[{"id": 0, "start": 0.0, "end": seconds, "text": text}])
        del payload["usage"]
    return _json(payload)


async def speech(fmt: Any, exchange: Exchange) -> web.StreamResponse:
    body = exchange.body
    if not isinstance(body, dict) or not isinstance(body.get("input"), str) or not body["input"]:
        return fmt.error(400, "'input' is a required property")
    if not body.get("voice"):
        return fmt.error(400, "'voice' is a required property")
    kind = AUDIO_TYPES.get(str(body.get("response_format", "mp3")), "audio/mpeg")
    audio = (b"ID3\x00" * (len(body["input"]) // 4 + 1))[: len(body["input"])]
    return web.Response(body=audio, content_type=kind)
