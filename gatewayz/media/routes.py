"""POST /v1/embeddings, /v1/images/generations, /v1/audio/transcriptions (multipart, and /base64 with the file
in JSON), /v1/audio/speech: OpenAI's request and answer shapes, served by any provider of the model that
speaks the operation (OpenAI-compatible providers), with failover and exact billing."""

from __future__ import annotations

import base64
import binascii
import mimetypes
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from gatewayz.api.deps import ContainerDep
from gatewayz.errors import InvalidRequest, PayloadTooLarge
from gatewayz.media.endpoint import authenticated, run_operation
from gatewayz.media.operations import OPERATIONS
from gatewayz.pipeline.context import RequestContext
from gatewayz.pipeline.parse import load_json
from gatewayz.providers.adapter import FilePart, Form

router = APIRouter(tags=["media"])

MAX_AUDIO_BYTES = 25 * 1024 * 1024  # OpenAI's own limit for transcription uploads
FORM_FIELDS = ("model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]",
               "chunking_strategy", "include[]", "stream")


async def _json_body(request: Request, limit: int) -> tuple[dict[str, Any], bytes]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    return load_json(raw), raw


def _check_text(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"`{name}` is required and must be a non-empty string.", param=name,
                             code="invalid_value")


@router.post("/v1/embeddings")
async def embeddings(request: Request, c: ContainerDep) -> Response:
    ctx = await authenticated(request, c, OPERATIONS["embeddings"])
    body, raw = await _json_body(request, c.settings.max_body_bytes)
    value = body.get("input")
    if value is None or value == "" or value == []:
        raise InvalidRequest("`input` is required: a string, an array of strings or of token arrays.",
                             param="input", code="invalid_value")
    return await run_operation(request, c, OPERATIONS["embeddings"], ctx, body, raw)


@router.post("/v1/images/generations")
async def images(request: Request, c: ContainerDep) -> Response:
    ctx = await authenticated(request, c, OPERATIONS["images"])
    body, raw = await _json_body(request, c.settings.max_body_bytes)
    _check_text(body, "prompt")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10):
        raise InvalidRequest("`n` must be an integer from 1 to 10.", param="n", code="invalid_value")
    if body.get("stream"):
        raise InvalidRequest("Streamed image generation is not supported; omit `stream`.", param="stream",
                             code="unsupported_parameter")
    return await run_operation(request, c, OPERATIONS["images"], ctx, body, raw)


@router.post("/v1/audio/speech")
async def speech(request: Request, c: ContainerDep) -> Response:
    ctx = await authenticated(request, c, OPERATIONS["speech"])
    body, raw = await _json_body(request, c.settings.max_body_bytes)
    _check_text(body, "input")
    if not isinstance(body.get("voice"), dict):  # a voice is a name, or an object naming a custom voice
        _check_text(body, "voice")
    if len(body["input"]) > 4096:
        raise InvalidRequest("`input` is at most 4096 characters.", param="input", code="invalid_value")
    return await run_operation(request, c, OPERATIONS["speech"], ctx, body, raw)


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request, c: ContainerDep) -> Response:
    ctx = await authenticated(request, c, OPERATIONS["transcriptions"])
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("Send the audio as multipart/form-data with a `file` part "
                             "(or use /v1/audio/transcriptions/base64 with JSON).", code="invalid_content_type")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_AUDIO_BYTES + 64 * 1024:
        raise PayloadTooLarge(f"The audio file is larger than {MAX_AUDIO_BYTES} bytes.")
    try:
        async with request.form(max_files=1, max_fields=32) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("The form needs a `file` part with the audio.", param="file",
                                     code="missing_file")
            data = await upload.read(MAX_AUDIO_BYTES + 1)
            fields = {k: str(v) for k, v in form.multi_items() if k != "file" and isinstance(v, str)}
            filename, ctype = upload.filename or "audio", upload.content_type or ""
    except MultiPartException as exc:
        raise InvalidRequest(f"The multipart body could not be read: {exc.message}", code="invalid_multipart") from None
    return await _transcribe(request, c, ctx, fields, filename, ctype, data)


@router.post("/v1/audio/transcriptions/base64")
async def transcriptions_base64(request: Request, c: ContainerDep) -> Response:
    ctx = await authenticated(request, c, OPERATIONS["transcriptions"])
    body, _ = await _json_body(request, c.settings.max_body_bytes)
    encoded = body.get("file")
    if not isinstance(encoded, str) or not encoded:
        raise InvalidRequest("`file` is required: the audio, base64-encoded (a data: URL is accepted).",
                             param="file", code="missing_file")
    ctype = ""
    if encoded.startswith("data:"):
        header, _, encoded = encoded.partition(",")
        ctype = header[5:].split(";")[0]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("`file` is not valid base64.", param="file", code="invalid_base64") from None
    fields = {k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
              for k, v in body.items() if k in FORM_FIELDS and v is not None}
    filename = body.get("filename") if isinstance(body.get("filename"), str) else "audio"
    return await _transcribe(request, c, ctx, fields, str(filename), ctype, data)


async def _transcribe(request: Request, c: ContainerDep, ctx: RequestContext, fields: dict[str, str],
                      filename: str, ctype: str, data: bytes) -> Response:
    if not data:
        raise InvalidRequest("The audio file is empty.", param="file", code="empty_file")
    if len(data) > MAX_AUDIO_BYTES:
        raise PayloadTooLarge(f"The audio file is larger than {MAX_AUDIO_BYTES} bytes.")
    if fields.get("stream") == "true":
        raise InvalidRequest("Streamed transcription is not supported; omit `stream`.", param="stream",
                             code="unsupported_parameter")
    ctype = ctype or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    fields.pop("stream", None)
    body: dict[str, Any] = dict(fields)
    form = Form({k: v for k, v in fields.items() if k != "model"}, FilePart(filename[:200], ctype, data))
    raw = b"".join(v.encode() for k, v in fields.items() if k == "prompt")
    return await run_operation(request, c, OPERATIONS["transcriptions"], ctx, body, raw, form)
