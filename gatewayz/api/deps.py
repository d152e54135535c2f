"""Typed FastAPI dependencies: the container, and who is calling (user or admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gatewayz.container import Container
from gatewayz.errors import AuthenticationFailed, PermissionDenied
from gatewayz.keys.service import Principal
from gatewayz.pipeline.authenticate import credential


def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_principal(request: Request, c: ContainerDep) -> Principal:
    token = credential({k.lower().encode(): v.encode("latin-1") for k, v in request.headers.items()})
    if token is None:
        raise AuthenticationFailed("Missing API key: send `Authorization: Bearer <key>`.", code="missing_api_key")
    return await c.keys.authenticate(token)


async def require_admin(request: Request, principal: Annotated[Principal, Depends(get_principal)],
                        c: ContainerDep) -> Principal:
    if not principal.is_admin:
        await c.audit.append(actor_of(principal), "security.admin_denied", request.url.path,
                             {"method": request.method, "key_id": principal.key_id})
        raise PermissionDenied("This route needs an admin key.", code="admin_required")
    return principal


def actor_of(principal: Principal) -> str:
    return "admin" if principal.user_id is None else f"user:{principal.user_id}"


async def require_user(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if principal.user_id is None:
        raise PermissionDenied("The admin key has no account of its own; use a user's key.", code="user_required")
    scopes = principal.restrictions.scopes
    if scopes is not None:
        # A scoped key reads with "read"; changing the account needs a key without scope restrictions.
        if request.method != "GET" or "read" not in scopes:
            raise PermissionDenied("This API key's scopes do not allow this route.", code="key_scope")
    return principal


Admin = Annotated[Principal, Depends(require_admin)]
User = Annotated[Principal, Depends(require_user)]
