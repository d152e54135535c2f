"""The OpenAI wire, shared by OpenAI and every OpenAI-compatible provider: the request goes out as the client
sent it (gateway-only fields removed, the upstream's model id set, usage always asked for on streams) and the
answer comes back as is."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from gatewayz.providers.adapter import Form, Outgoing
from gatewayz.providers.spec import ProviderSpec
from gatewayz.providers.sse import SSEParser
from gatewayz.routing.planner import GATEWAY_FIELDS


def upstream_body(body: dict[str, Any], upstream_model: str | None, stream: bool) -> dict[str, Any]:
    """The client's request for the upstream: its model id (None: no model in the body), usage on streams."""
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    if upstream_model is None:
        out.pop("model", None)
    else:
        out["model"] = upstream_model
    if stream:
        # Always ask for usage: billing needs it even when the client did not ask to see it.
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    return out


def upstream_payload(body: dict[str, Any], upstream_model: str, stream: bool) -> bytes:
    return orjson.dumps(upstream_body(body, upstream_model, stream))


def base_headers(spec: ProviderSpec, auth: dict[str, str]) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream", **auth}
    headers.update(spec.headers)
    return headers


class OpenAIAdapter:
    wire = "openai"

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.url = spec.base_url + "/chat/completions"
        self.headers = base_headers(spec, {"authorization": f"Bearer {spec.api_key}"} if spec.api_key else {})

    async def request(self, body: dict[str, Any], upstream_model: str, stream: bool) -> Outgoing:
        return Outgoing(self.url, self.headers, upstream_payload(body, upstream_model, stream))

    def response(self, data: Any) -> dict[str, Any]:
        from gatewayz.providers.engine import AttemptFailed

        if not isinstance(data, dict) or "error" in data and "choices" not in data:
            raise AttemptFailed("bad_response", 200)
        return data

    async def operation(self, op: str, body: dict[str, Any] | None, form: Form | None,
                        upstream_model: str) -> Outgoing:
        url = f"{self.spec.base_url}/{op}"
        if form is not None:
            data, content_type = multipart(form, upstream_model)
            return Outgoing(url, {**self.headers, "content-type": content_type, "accept": "*/*"}, data)
        out = {k: v for k, v in (body or {}).items() if k not in GATEWAY_FIELDS}
        out["model"] = upstream_model
        return Outgoing(url, {**self.headers, "accept": "*/*"}, orjson.dumps(out))

    def decoder(self) -> SSEParser:
        return SSEParser()

    def error_body(self, status: int, body: bytes) -> bytes:
        return openai_error_body(status, body)


def openai_error_body(status: int, body: bytes, message_keys: tuple[str, ...] = ("message", "detail")) -> bytes:
    """An upstream's error as OpenAI's error body: passed through when it already is one, else wrapped with
    the upstream's message (any JSON `message`/`detail`, or the start of the text)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]:
        return body
    message = ""
    if isinstance(data, dict):
        inner = data.get("error") if isinstance(data.get("error"), dict) else data
        message = next((str(inner[k]) for k in message_keys if isinstance(inner, dict) and inner.get(k)), "")
        if not message and isinstance(data.get("error"), str):
            message = data["error"]
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"The upstream refused the request (HTTP {status})."
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": f"upstream_{status}"}})


def make(spec: ProviderSpec) -> OpenAIAdapter:
    return OpenAIAdapter(spec)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def multipart(form: Form, model: str) -> tuple[bytes, str]:
    """multipart/form-data for an upstream: the form's fields with the upstream's model id, then the file."""
    boundary = "gatewayz" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in {**form.fields, "model": model}.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    f = form.file
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{_quote(f.filename)}"\r\n'
                 f"Content-Type: {f.content_type}\r\n\r\n".encode() + f.data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
