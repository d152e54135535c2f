"""Typed FastAPI dependencies: the container, and who is calling (a user, or a role of the admin area).

A caller is an API key, a login session (`gws_` token, from POST /auth/login), or the configured admin key.
The roles a route admits come from the permission table in gatewayz.auth.roles: `Admin` (admin),
`Support` (admin, support: read users and the audit log), `Developer` (admin, support, developer: read the
operational views). A refusal is a 403 and a `security.admin_denied` row in the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from gatewayz.auth.roles import ADMIN, holders
from gatewayz.auth.tokens import is_session_token
from gatewayz.container import Container
from gatewayz.errors import AuthenticationFailed, PermissionDenied
from gatewayz.keys.service import Principal
from gatewayz.pipeline.authenticate import credential


def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


ContainerDep = Annotated[Container, Depends(get_container)]


def request_credential(request: Request) -> str | None:
    return credential({k.lower().encode(): v.encode("latin-1") for k, v in request.headers.items()})


async def get_principal(request: Request, c: ContainerDep) -> Principal:
    token = request_credential(request)
    if token is None:
        raise AuthenticationFailed("Missing API key: send `Authorization: Bearer <key>`.", code="missing_api_key")
    if is_session_token(token):
        return await c.auth.session_principal(token)
    return await c.keys.authenticate(token)


def actor_of(principal: Principal) -> str:
    return "admin" if principal.user_id is None else f"user:{principal.user_id}"


def _check_scopes(request: Request, principal: Principal) -> None:
    scopes = principal.restrictions.scopes
    if scopes is not None:
        # A scoped key reads with "read"; changing anything needs a key without scope restrictions.
        if request.method != "GET" or "read" not in scopes:
            raise PermissionDenied("This API key's scopes do not allow this route.", code="key_scope")


RoleCheck = Callable[[Request, Principal, Container], Awaitable[Principal]]


def require_role(*roles: str) -> RoleCheck:
    """A dependency admitting callers whose role is one of `roles` (the admin key's role is admin)."""
    allowed = frozenset(roles)
    needs = " or ".join(r for r in ("admin", "support", "developer", "user") if r in allowed)

    async def check(request: Request, principal: Annotated[Principal, Depends(get_principal)],
                    c: ContainerDep) -> Principal:
        if principal.role not in allowed:
            await c.audit.append(actor_of(principal), "security.admin_denied", request.url.path,
                                 {"method": request.method, "key_id": principal.key_id, "role": principal.role,
                                  "session": principal.session_id is not None, "needs": sorted(allowed)})
            raise PermissionDenied(f"This route needs the role {needs}.", code="admin_required")
        _check_scopes(request, principal)
        return principal
    return check


async def require_user(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.user_id is None:
        raise PermissionDenied("The admin key has no account of its own; use a user's key.", code="user_required")
    _check_scopes(request, principal)
    return principal


require_admin = require_role(ADMIN)
Admin = Annotated[Principal, Depends(require_admin)]
Support = Annotated[Principal, Depends(require_role(*holders("users.read")))]
Developer = Annotated[Principal, Depends(require_role(*holders("operations.read")))]
User = Annotated[Principal, Depends(require_user)]
