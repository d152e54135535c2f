"""AWS Signature Version 4 for one HTTP request (header-based signing, the way the AWS SDKs sign Bedrock).

The canonical URI is the path exactly as it goes on the wire, URI-encoded once more: AWS services other
than S3 re-encode the received path before comparing signatures, so a model id `a:0` sent as `/model/a:0`
signs as `/model/a%3A0`, and one sent as `/model/a%3A0` signs as `/model/a%253A0`. `wire_url` gives the
form aiohttp (yarl) will really send, so the signature always matches what AWS receives."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from yarl import URL

ALGORITHM = "AWS4-HMAC-SHA256"
_TERMINATOR = "aws4_request"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret in a log or a traceback
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def wire_url(url: str) -> URL:
    """The URL as the HTTP client sends it (yarl normalises percent-encodings such as %3A -> :)."""
    return URL(url)


def host_header(url: URL) -> str:
    """The Host header aiohttp sends for `url`: the host, plus the port when it is not the scheme's default."""
    host = url.raw_host or ""
    if url.port is not None and not url.is_default_port():
        host += f":{url.port}"
    return host


def canonical_uri(raw_path: str) -> str:
    """The wire path URI-encoded once more (RFC 3986 unreserved characters and '/' kept)."""
    return quote(raw_path or "/", safe="/~")


def canonical_query(raw_query: str) -> str:
    """Query parameters sorted by encoded name then value, each encoded with the unreserved set."""
    if not raw_query:
        return ""
    pairs = []
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((_encode_query_part(name), _encode_query_part(value)))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def _encode_query_part(text: str) -> str:
    return quote(unquote(text), safe="~")


def canonical_request(method: str, url: URL, headers: dict[str, str], payload_hash: str) -> tuple[str, str]:
    """(canonical request, signed header names joined by ';'); `headers` are exactly the signed ones."""
    folded = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    names = sorted(folded)
    lines = "".join(f"{name}:{folded[name]}\n" for name in names)
    signed = ";".join(names)
    request = "\n".join([method.upper(), canonical_uri(url.raw_path), canonical_query(url.raw_query_string),
                         lines, signed, payload_hash])
    return request, signed


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, _TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def amz_date(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def sign(method: str, url: str, body: bytes, creds: Credentials, region: str, service: str,
         extra_signed: dict[str, str] | None = None, now: datetime | None = None) -> dict[str, str]:
    """The headers that authenticate this request: host, x-amz-date, x-amz-content-sha256,
    x-amz-security-token (with a session token) and authorization. `extra_signed` headers (e.g. the
    content type) are signed too; the caller sends them unchanged."""
    target = wire_url(url)
    stamp = amz_date(now)
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": host_header(target), "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    if creds.session_token:
        headers["x-amz-security-token"] = creds.session_token
    signed_headers = {**{k.lower(): v for k, v in (extra_signed or {}).items()}, **headers}
    request, signed_names = canonical_request(method, target, signed_headers, payload_hash)
    scope = f"{stamp[:8]}/{region}/{service}/{_TERMINATOR}"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = signing_key(creds.secret_access_key, stamp[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"{ALGORITHM} Credential={creds.access_key_id}/{scope}, "
                                f"SignedHeaders={signed_names}, Signature={signature}")
    return headers
