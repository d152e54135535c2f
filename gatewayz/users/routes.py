"""Admin user management and the caller's own balance and API keys."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatewayz.api.deps import Admin, ContainerDep, Support, User, actor_of
from gatewayz.api.fields import FutureTime
from gatewayz.billing.money import nanos_to_json, usd_to_nanos
from gatewayz.errors import Conflict, InvalidRequest
from gatewayz.keys.restrictions import RestrictionsIn
from gatewayz.keys.store import RESTRICTION_COLUMNS
from gatewayz.limits.quota import enforce, optional_limit
from gatewayz.users.store import EmailTaken

router = APIRouter()
_EMAIL = re.compile(r"^[^@\s<>\"';]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
MAX_GRANT_USD = Decimal("1000000")


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    credits: Decimal = Field(default=Decimal(0), ge=0, le=MAX_GRANT_USD, decimal_places=9)
    role: Literal["admin", "developer", "support", "user"] = "user"
    trial: bool = False   # start the configured trial (gatewayz.plans) for the new user

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError("not a valid e-mail address")
        return v.lower()


class NewKey(RestrictionsIn):
    name: str = Field(default="default", min_length=1, max_length=100, pattern=r"^[\w .\-]+$")
    expires_at: FutureTime | None = None


def _with_usd(r: dict[str, Any]) -> dict[str, Any]:
    nanos = r.get("daily_spend_limit_nanos")
    return {**r, "daily_spend_limit": nanos_to_json(nanos) if nanos is not None else None} \
        if "daily_spend_limit_nanos" in r else r


def key_json(k: Any) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "last4": k.last4, "created_at": k.created_at,
            "expires_at": k.expires_at, **_with_usd(k.restrictions or {})}


def _restrictions(body: RestrictionsIn) -> dict[str, Any]:
    """Only the restriction fields the client sent (null clears one)."""
    out = {f: getattr(body, f) for f in RESTRICTION_COLUMNS if f in body.model_fields_set}
    if "daily_spend_limit" in body.model_fields_set:
        usd = body.daily_spend_limit
        out["daily_spend_limit_nanos"] = usd_to_nanos(usd) if usd is not None else None
    return out


@router.post("/admin/users", status_code=201, tags=["admin"])
async def create_user(body: NewUser, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    try:
        user = await c.users.create(body.email, body.role, usd_to_nanos(body.credits), actor=actor_of(admin))
    except EmailTaken:
        raise Conflict(f"A user with e-mail {body.email} already exists.", code="email_taken") from None
    key = await c.keys.create(user.id, "default")
    await c.audit.append(actor_of(admin), "user.create", f"user:{user.id}", {"role": user.role, "key_id": key.id,
                                                                      "credits_nanos": user.balance_nanos})
    trial = await c.plans.start_trial(user.id, actor="admin") if body.trial else None
    return {"id": user.id, "email": user.email, "role": user.role, "balance": nanos_to_json(user.balance_nanos),
            "api_key": key.api_key, "key_id": key.id, "trial": trial}


@router.get("/admin/users", tags=["admin"])
async def list_users(_: Support, c: ContainerDep, limit: int = Query(50, ge=1, le=1000),
                     offset: int = Query(0, ge=0)) -> dict[str, Any]:
    users, total = await c.users.list(limit, offset)
    return {"data": [{"id": u.id, "email": u.email, "role": u.role, "is_active": u.is_active,
                      "balance": nanos_to_json(u.balance_nanos), "created_at": u.created_at} for u in users],
            "total": total, "limit": limit, "offset": offset}


@router.get("/user/balance", tags=["user"])
async def balance(user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    nanos, allowance = await c.credits.funds(user.user_id, c.plans.book.period_of(user))
    # balance: purchased credits (never expire); allowance: this period's subscription allowance or trial
    # credit, spent first.
    return {"balance": nanos_to_json(nanos), "balance_nanos": nanos, "allowance": nanos_to_json(allowance),
            "allowance_nanos": allowance, "available": nanos_to_json(nanos + allowance), "currency": "USD"}


@router.post("/user/api-keys", status_code=201, tags=["user"])
async def create_key(body: NewKey, user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    await enforce(c.limits.limiter, f"u{user.user_id}:keys", optional_limit(c.settings.limits.key_creations_per_hour,
                  3600), "key_creation", "API keys created")
    key = await c.keys.create(user.user_id, body.name, body.expires_at, _restrictions(body))
    await c.audit.append(actor_of(user), "key.create", f"key:{key.id}", {"name": key.name})
    return {"id": key.id, "name": key.name, "api_key": key.api_key, "last4": key.last4,
            "created_at": key.created_at, "expires_at": key.expires_at, **_with_usd(_restrictions(body))}


class KeyUpdate(RestrictionsIn):
    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[\w .\-]+$")


@router.put("/user/api-keys/{key_id}", tags=["user"])
async def update_key(key_id: int, body: KeyUpdate, user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    values = _restrictions(body)
    if body.name is not None:
        values["name"] = body.name
    updated = key_json(await c.keys.update(user.user_id, key_id, values))
    await c.audit.append(actor_of(user), "key.update", f"key:{key_id}", {"fields": sorted(values)})
    return updated


@router.post("/user/api-keys/{key_id}/rotate", status_code=201, tags=["user"])
async def rotate_key(key_id: int, user: User, c: ContainerDep) -> dict[str, Any]:
    """A new secret with the same name and restrictions; the old key stops working at once."""
    assert user.user_id is not None
    key = await c.keys.rotate(user.user_id, key_id)
    await c.audit.append(actor_of(user), "key.rotate", f"key:{key_id}", {"new_key_id": key.id})
    return {"id": key.id, "name": key.name, "api_key": key.api_key, "last4": key.last4, "replaces": key_id,
            "created_at": key.created_at, "expires_at": key.expires_at}


class KeyLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rpm_limit: int | None = Field(default=None, ge=1, le=10_000_000)
    tpm_limit: int | None = Field(default=None, ge=1, le=10_000_000_000)


async def _limits_json(c: Any, k: Any) -> dict[str, Any]:
    r = k.restrictions or {}
    rpm, tpm = c.limits.key_limits(r.get("rpm_limit"), r.get("tpm_limit"))
    out: dict[str, Any] = {"key_id": k.id, "name": k.name, "rpm_limit": r.get("rpm_limit"),
                           "tpm_limit": r.get("tpm_limit")}
    for name, limit in (("requests", rpm), ("tokens", tpm)):
        now = await c.limits.limiter.peek(f"k{k.id}:{'rpm' if name == 'requests' else 'tpm'}", limit) if limit else None
        out[name] = {"per_minute": limit.amount, "remaining": now.remaining if now else None} if limit else None
    return out


@router.get("/user/rate-limits", tags=["user"])
async def rate_limits(user: User, c: ContainerDep) -> dict[str, Any]:
    """Each key's effective limits per minute (its own, else the gateway's defaults) and what is left now."""
    assert user.user_id is not None
    return {"data": [await _limits_json(c, k) for k in await c.keys.list(user.user_id)]}


@router.put("/user/rate-limits/{key_id}", tags=["user"])
async def set_rate_limits(key_id: int, body: KeyLimits, user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    values: dict[str, Any] = {f: getattr(body, f) for f in ("rpm_limit", "tpm_limit") if f in body.model_fields_set}
    limits = await _limits_json(c, await c.keys.update(user.user_id, key_id, values))
    await c.audit.append(actor_of(user), "key.limits", f"key:{key_id}", values)
    return limits


@router.get("/user/api-keys", tags=["user"])
async def list_keys(user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    return {"data": [key_json(k) for k in await c.keys.list(user.user_id)]}


@router.delete("/user/api-keys/{key_id}", tags=["user"])
async def delete_key(key_id: int, user: User, c: ContainerDep) -> dict[str, Any]:
    assert user.user_id is not None
    if key_id < 1:
        raise InvalidRequest("key id must be a positive integer", param="key_id")
    await c.keys.delete(user.user_id, key_id)
    await c.audit.append(actor_of(user), "key.delete", f"key:{key_id}")
    return {"id": key_id, "deleted": True}
