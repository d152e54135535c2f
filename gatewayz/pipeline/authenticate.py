"""Stage: who is calling. Accepts `Authorization: Bearer KEY` and `x-api-key: KEY`."""

from __future__ import annotations

from gatewayz.allowlist.service import IpAllowlist
from gatewayz.auth.tokens import is_session_token
from gatewayz.errors import AuthenticationFailed, PermissionDenied
from gatewayz.keys.service import KeyService
from gatewayz.pipeline.context import RequestContext


def credential(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key else None


async def authenticate(ctx: RequestContext, headers: dict[bytes, bytes], keys: KeyService, ip: str,
                       allowlist: IpAllowlist) -> None:
    """Who is calling, and may they call from this address (the key's own `allowed_ips`, the IP allowlist)."""
    ctx.client_ip = ip
    token = credential(headers)
    if token is None:
        raise AuthenticationFailed("Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
                                   code="missing_api_key")
    if is_session_token(token):
        raise AuthenticationFailed("A session token manages an account (/user/*); inference needs an API key "
                                   "(gw_live_..., made at POST /user/api-keys).",
                                   code="session_token_not_for_inference")
    ctx.principal = p = await keys.authenticate(token)
    if p.user_id is None:
        raise PermissionDenied("The admin key manages the gateway; create a user key for inference "
                               "(`gatewayz users create`).", code="admin_key_not_for_inference")
    r = p.restrictions
    r.check_scope("inference")
    r.check_ip(ip)
    allowlist.check(p.user_id, ip)
    referrer = headers.get(b"referer") or headers.get(b"origin")
    r.check_referrer(referrer.decode("latin-1") if referrer else None)
