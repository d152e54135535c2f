"""Vertex AI credentials: a static access token, or OAuth 2.0 access tokens minted from a credentials JSON file.

Options (ProviderSpec.options): `access_token` (used as is, never refreshed), else `credentials_file` (the
GOOGLE_APPLICATION_CREDENTIALS file): a service account ({"type": "service_account", client_email,
private_key, private_key_id, token_uri, project_id}) signs an RS256 JWT assertion (iss = client_email, scope
cloud-platform, aud = token_uri, one hour) exchanged at token_uri with the jwt-bearer grant (RFC 7523); an
authorized user ({"type": "authorized_user"}, what `gcloud auth application-default login` writes) uses its
refresh token. The access token is cached until REFRESH_MARGIN_S before it expires; concurrent requests share
one refresh. Any failure (no credentials, unreadable file, refused or unreachable token endpoint) raises
AttemptFailed("auth"), so the next provider is tried."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from gatewayz.providers.engine import AttemptFailed
from gatewayz.providers.spec import ProviderSpec

log = logging.getLogger("gatewayz.providers.gemini")

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
ASSERTION_LIFETIME_S = 3600
REFRESH_MARGIN_S = 300
MAX_REFRESH_TIMEOUT_S = 30.0


class CredentialsError(Exception):
    """Why no access token could be obtained (logged; the request fails over)."""


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign_assertion(credentials: dict[str, Any], token_uri: str, now: int) -> str:
    """The RS256-signed JWT a service account presents to the token endpoint."""
    email = credentials.get("client_email")
    pem = credentials.get("private_key")
    if not isinstance(email, str) or not isinstance(pem, str):
        raise CredentialsError("the service account file has no client_email or private_key")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except ValueError as exc:
        raise CredentialsError(f"the service account private key is unreadable: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialsError("the service account private key is not an RSA key")
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if isinstance(credentials.get("private_key_id"), str):
        header["kid"] = credentials["private_key_id"]
    claims = {"iss": email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + ASSERTION_LIFETIME_S}
    signing_input = _b64url(orjson.dumps(header)) + b"." + _b64url(orjson.dumps(claims))
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + _b64url(signature)).decode()


class AccessTokens:
    def __init__(self, spec: ProviderSpec) -> None:
        self._name = spec.name
        self._static = spec.options.get("access_token") or None
        self._path = spec.options.get("credentials_file") or None
        self._timeout = aiohttp.ClientTimeout(total=min(spec.timeout_s, MAX_REFRESH_TIMEOUT_S),
                                              sock_connect=spec.connect_timeout_s)
        self._credentials: dict[str, Any] | None = None
        self._token: str | None = None
        self._expires_at = 0.0         # time.monotonic() when the cached token stops being used
        self._lock = asyncio.Lock()
        self.refreshes = 0             # tokens obtained from the token endpoint (for tests and metrics)

    @property
    def credentials_project(self) -> str | None:
        """The project named by the credentials file, once it was read."""
        creds = self._credentials or {}
        project = creds.get("project_id") or creds.get("quota_project_id")
        return project if isinstance(project, str) and project else None

    def forget(self) -> None:
        """The provider refused the cached token (revoked, or the clock was off): mint a new one next time."""
        self._token, self._expires_at = None, 0.0

    async def token(self) -> str:
        if self._static:
            return self._static
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        async with self._lock:  # one refresh at a time; the others wait for its token
            if self._token is not None and time.monotonic() < self._expires_at:
                return self._token
            try:
                token, lifetime = await self._fetch()
            except (CredentialsError, OSError, aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                log.warning("provider %s: no Vertex AI access token: %s", self._name, exc)
                raise AttemptFailed("auth") from None
            self._token = token
            self._expires_at = time.monotonic() + max(lifetime - REFRESH_MARGIN_S, 0)
            self.refreshes += 1
            return token

    def _load(self) -> dict[str, Any]:
        if self._credentials is None:
            if not self._path:
                raise CredentialsError("set the access_token or credentials_file option")
            data = orjson.loads(Path(self._path).read_bytes())
            if not isinstance(data, dict):
                raise CredentialsError(f"{self._path} is not a credentials JSON object")
            self._credentials = data
        return self._credentials

    async def _fetch(self) -> tuple[str, float]:
        creds = self._load()
        uri = creds.get("token_uri")
        token_uri = uri if isinstance(uri, str) and uri else DEFAULT_TOKEN_URI
        kind = creds.get("type")
        if kind == "service_account":
            form = {"grant_type": JWT_GRANT, "assertion": sign_assertion(creds, token_uri, int(time.time()))}
        elif kind == "authorized_user":
            form = {"grant_type": "refresh_token", "client_id": str(creds.get("client_id", "")),
                    "client_secret": str(creds.get("client_secret", "")),
                    "refresh_token": str(creds.get("refresh_token", ""))}
        else:
            raise CredentialsError(f"unsupported credentials type {kind!r} (service_account or authorized_user)")
        async with aiohttp.ClientSession(timeout=self._timeout) as session, \
                session.post(token_uri, data=form) as resp:
            body = await resp.read()
            if resp.status != 200:
                detail = body[:300].decode("utf-8", "replace")
                raise CredentialsError(f"the token endpoint answered HTTP {resp.status}: {detail}")
        data = orjson.loads(body)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise CredentialsError("the token endpoint answered without an access_token")
        lifetime = data.get("expires_in", 3600)
        return token, float(lifetime) if isinstance(lifetime, int | float) else 3600.0
