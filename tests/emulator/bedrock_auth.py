"""SigV4 verification for the Bedrock emulator, with botocore's signer as the reference implementation."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime

from aiohttp import web

_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
                      r"SignedHeaders=([a-z0-9;.-]+),\s*Signature=([0-9a-f]{64})$")
MAX_SKEW_S = 15 * 60


def sigv4_problem(request: web.Request, raw_body: bytes, secret: str, access_key_id: str | None,
                  region: str | None, service: str = "bedrock") -> str | None:
    """Why the request's SigV4 signature is not valid for `secret`, or None when it is."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _AUTH_RE.match(request.headers.get("Authorization", ""))
    if match is None:
        return "Authorization header requires Credential, SignedHeaders and Signature."
    key_id, date, scope_region, scope_service, signed, signature = match.groups()
    if access_key_id is not None and key_id != access_key_id:
        return "The security token included in the request is invalid."
    if scope_service != service or (region is not None and scope_region != region):
        return f"Credential should be scoped to a valid region and service ({region or '*'}/{service})."
    stamp = request.headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "Missing or malformed X-Amz-Date header."
    if stamp[:8] != date or abs((datetime.now(UTC) - when).total_seconds()) > MAX_SKEW_S:
        return "Signature expired or not yet valid: X-Amz-Date is too far from the server time."
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names or any(n not in request.headers for n in names):
        return "SignedHeaders must include host and x-amz-date, and every signed header must be present."
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed is not None and claimed != hashlib.sha256(raw_body).hexdigest():
        return "The provided 'x-amz-content-sha256' header does not match what was computed."
    url = f"http://{request.headers['host']}{request.raw_path}"
    reference = AWSRequest(method=request.method, url=url, data=raw_body,
                           headers={n: request.headers[n] for n in names})
    reference.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret), scope_service, scope_region)
    canonical = signer.canonical_request(reference)
    expected = signer.signature(signer.string_to_sign(reference, canonical), reference)
    if not hmac.compare_digest(expected, signature):
        return ("The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.")
    return None
