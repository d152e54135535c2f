"""Self-service accounts: register, log in and out (session tokens), set or change the password.

/auth/register and /auth/login are deliberately public, and limited per client address."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import ContainerDep, User, actor_of, request_credential
from gatewayz.auth.passwords import MAX_PASSWORD_CHARS
from gatewayz.auth.tokens import is_session_token
from gatewayz.errors import AuthenticationFailed

router = APIRouter(tags=["accounts"])


class EmailPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)
    current_password: str | None = Field(default=None, min_length=1, max_length=MAX_PASSWORD_CHARS)


@router.post("/auth/register", status_code=201)
async def register(body: EmailPassword, request: Request, c: ContainerDep) -> dict[str, Any]:
    """A new account with no credits and no key: log in, then create keys at POST /user/api-keys."""
    ip = c.proxies.client_ip(request.scope)
    user = await c.auth.register(body.email, body.password, ip)
    await c.audit.append(f"user:{user.id}", "user.register", f"user:{user.id}", {"ip": ip})
    return {"id": user.id, "email": user.email, "role": user.role, "created_at": user.created_at}


@router.post("/auth/login")
async def login(body: EmailPassword, request: Request, c: ContainerDep) -> dict[str, Any]:
    """A session token for the account routes (/user/*, and the admin area for staff roles); not for inference."""
    ip = c.proxies.client_ip(request.scope)
    s = await c.auth.login(body.email, body.password, ip)
    await c.audit.append(f"user:{s.user.user_id}", "user.login", f"session:{s.session_id}", {"ip": ip})
    return {"session_token": s.token, "token_type": "bearer", "expires_at": s.expires_at,
            "user": {"id": s.user.user_id, "email": s.user.email, "role": s.user.role}}


@router.post("/auth/logout")
async def logout(request: Request, c: ContainerDep) -> dict[str, Any]:
    """Ends the session whose token is sent as the bearer credential, at once."""
    token = request_credential(request)
    if token is None or not is_session_token(token):
        raise AuthenticationFailed("Send the session token to end: `Authorization: Bearer gws_...`.",
                                   code="missing_session")
    user_id = await c.auth.logout(token)
    if user_id is None:
        raise AuthenticationFailed("Invalid or expired session.", code="invalid_session")
    await c.audit.append(f"user:{user_id}", "user.logout")
    return {"logged_out": True}


@router.post("/user/password")
async def set_password(body: NewPassword, user: User, request: Request, c: ContainerDep) -> dict[str, Any]:
    """Set a first password (accounts made by an admin have none), or change it with `current_password`.
    Every other session of the account ends."""
    changed = await c.auth.set_password(user, body.password, body.current_password, c.proxies.client_ip(request.scope))
    await c.audit.append(actor_of(user), "user.password_changed" if changed else "user.password_set",
                         f"user:{user.user_id}")
    return {"password_set": True, "replaced": changed}
