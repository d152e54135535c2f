"""Google's generateContent wire, as AI Studio (the Gemini API) and Vertex AI serve it, plus an OAuth token endpoint.

Routes:
- AI Studio: POST /v1beta/models/{model}:generateContent and :streamGenerateContent; the key in the
  x-goog-api-key header (or ?key=).
- Vertex AI: POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent
  (and :streamGenerateContent); `Authorization: Bearer <token>` where the token is the emulator's api_key (a
  static access token) or one this emulator's token endpoint issued and that has not expired.
- POST /token: the OAuth 2.0 token endpoint (a form). grant_type urn:ietf:params:oauth:grant-type:jwt-bearer
  checks the assertion: an RS256 JWT whose signature verifies with `public_key`, with iss, the cloud-platform
  scope, aud = this endpoint's URL, and iat <= now < exp <= iat + 3600; grant_type refresh_token checks
  `refresh_token`. It answers {"access_token", "expires_in": token_lifetime_s, "token_type": "Bearer"} or 400
  {"error": "invalid_grant", "error_description"}. `token_requests` counts the calls.

streamGenerateContent with ?alt=sse streams server-sent events (stream faults apply); without it, the events
come as one JSON array. Errors have Google's shape {"error": {"code", "message", "status"}} (+ details with
the reason when a fault gives an error_code). Semantics and token accounting: gemini_generate.py;
validation: gemini_validate.py."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .gemini_generate import plan_generation, response_body, stream_events
from .gemini_validate import Invalid, validate
from .openai_format import json_response
from .wire import EventStream, Exchange, Route

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
AI_STUDIO = "/v1beta/models/{target}"
VERTEX = "/v1/projects/{project}/locations/{location}/publishers/google/models/{target}"
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
          503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class GeminiFormat:
    def __init__(self, public_key: rsa.RSAPublicKey | None = None, token_lifetime_s: int = 3600,
                 refresh_token: str | None = None) -> None:
        self.public_key = public_key
        self.token_lifetime_s = token_lifetime_s
        self.refresh_token = refresh_token
        self.tokens: dict[str, float] = {}   # issued access token -> time.time() when it expires
        self.token_requests = 0

    def routes(self) -> Sequence[Route]:
        return (Route("POST", AI_STUDIO, self.generate), Route("POST", VERTEX, self.generate),
                Route("POST", "/token", self.token))

    def authorized(self, request: web.Request, api_key: str) -> bool:
        if request.path == "/token":
            return True  # the assertion itself is the credential
        if request.path.startswith("/v1beta/"):
            return api_key in (request.headers.get("x-goog-api-key"), request.query.get("key"))
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        return scheme.lower() == "bearer" and (token == api_key or self.tokens.get(token, 0) > time.time())

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        error: dict[str, Any] = {"code": status, "message": message,
                                 "status": STATUS.get(status, "FAILED_PRECONDITION" if status < 500 else "INTERNAL")}
        if code:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code,
                                 "domain": "googleapis.com"}]
        return json_response({"error": error}, status)

    def model_of(self, request: web.Request, body: Any) -> str | None:
        target = request.match_info.get("target")
        return target.rpartition(":")[0] or target if target else None

    def wants_stream(self, request: web.Request, body: Any) -> bool:
        return request.path.endswith(":streamGenerateContent")

    async def not_found(self, exchange: Exchange) -> web.StreamResponse:
        return self.error(404, f"The requested URL {exchange.request.path} was not found on this server.")

    # --------------------------------------------------------------------------------------- generateContent
    async def generate(self, exchange: Exchange) -> web.StreamResponse:
        model, _, method = exchange.request.match_info["target"].rpartition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return self.error(404, f"Method {method!r} is not found for models/{model}.")
        try:
            validate(exchange.body, model)
        except Invalid as exc:
            return self.error(400, str(exc))
        plan = plan_generation(exchange.body, exchange.fault, model)
        if method == "generateContent":
            return json_response(response_body(plan))
        if exchange.request.query.get("alt") != "sse":
            return json_response(list(stream_events(plan)))
        stream = EventStream(exchange)
        await stream.open()
        for event in stream_events(plan):
            await stream.send(event)
            if stream.dropped:
                break
        return await stream.finish(None)

    # --------------------------------------------------------------------------------------------- OAuth token
    async def token(self, exchange: Exchange) -> web.StreamResponse:
        self.token_requests += 1
        form = exchange.body if isinstance(exchange.body, dict) else {}
        grant = form.get("grant_type")
        if grant == JWT_GRANT:
            problem = self._check_assertion(str(form.get("assertion", "")), str(exchange.request.url))
        elif grant == "refresh_token":
            ok = self.refresh_token is not None and form.get("refresh_token") == self.refresh_token
            problem = None if ok else "Bad Request"
        else:
            return json_response({"error": "unsupported_grant_type", "error_description": str(grant)}, 400)
        if problem is not None:
            return json_response({"error": "invalid_grant", "error_description": problem}, 400)
        token = f"ya29.emu-{uuid.uuid4().hex}"
        self.tokens[token] = time.time() + self.token_lifetime_s
        return json_response({"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"})

    def _check_assertion(self, assertion: str, url: str) -> str | None:
        pieces = assertion.split(".")
        if len(pieces) != 3 or self.public_key is None:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        try:
            header = orjson.loads(_b64url_decode(pieces[0]))
            claims = orjson.loads(_b64url_decode(pieces[1]))
            signature = _b64url_decode(pieces[2])
        except (ValueError, orjson.JSONDecodeError):
            return "Invalid JWT: unreadable"
        if header.get("alg") != "RS256":
            return "Invalid JWT: the algorithm must be RS256"
        try:
            self.public_key.verify(signature, f"{pieces[0]}.{pieces[1]}".encode(), padding.PKCS1v15(),
                                   hashes.SHA256())
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or not iat - 60 <= now < exp or exp - iat > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        if not claims.get("iss") or CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "Invalid JWT: iss and the cloud-platform scope are required"
        if claims.get("aud") != url:
            return f"Invalid JWT: aud must be {url}"
        return None
