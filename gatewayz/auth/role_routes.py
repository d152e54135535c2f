"""Roles in the admin area: change a user's role (with a reason, audited), each role's permissions, and the
log of role changes."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gatewayz.api.deps import Admin, ContainerDep, Support, actor_of
from gatewayz.auth.roles import PERMISSIONS, ROLE_PERMISSIONS
from gatewayz.auth.store import LastAdmin, RoleChanged, UnknownUser
from gatewayz.errors import Conflict, NotFound, PermissionDenied

router = APIRouter(tags=["admin"])
ROLE_CHANGED = "user.role_changed"


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    role: Literal["admin", "developer", "support", "user"]
    reason: str = Field(min_length=3, max_length=500)


@router.put("/admin/users/{user_id}/role")
async def change_role(user_id: int, body: RoleChange, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    """Takes effect at once on every worker. Admins cannot change their own role, and the last active admin
    user cannot be demoted (the configured admin key is not counted: it may be unset)."""
    if admin.user_id == user_id:
        raise PermissionDenied("Admins cannot change their own role; ask another admin.", code="own_role")
    try:
        old = await c.auth.accounts.set_role(user_id, body.role)
    except UnknownUser:
        raise NotFound(f"No user {user_id}.", param="user_id", code="user_not_found") from None
    except LastAdmin:
        raise Conflict("This is the last active admin; promote another user to admin first.",
                       code="last_admin") from None
    except RoleChanged:
        raise Conflict("The user's role changed meanwhile; read it again and retry.", code="role_changed") from None
    if old != body.role:
        await c.audit.append(actor_of(admin), ROLE_CHANGED, f"user:{user_id}",
                             {"old_role": old, "new_role": body.role, "reason": body.reason})
        await c.revocations.publish(None)  # cached API-key verifications carry the old role: drop them everywhere
    return {"id": user_id, "role": body.role, "previous_role": old, "changed": old != body.role}


@router.get("/admin/roles/permissions/{role}")
async def role_permissions(role: str, _: Support) -> dict[str, Any]:
    held = ROLE_PERMISSIONS.get(role)
    if held is None:
        raise NotFound(f"No role {role!r}; roles are {', '.join(ROLE_PERMISSIONS)}.", param="role",
                       code="role_not_found")
    return {"role": role, "permissions": [{"name": p, "description": d} for p, d in PERMISSIONS.items() if p in held]}


@router.get("/admin/roles/audit/log")
async def role_log(_: Support, c: ContainerDep, limit: int = Query(50, ge=1, le=1000),
                   offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """Role changes, newest first: who, whom, when, from which role to which, and why."""
    rows, total = await c.audit.entries(limit, offset, ROLE_CHANGED)
    data = [{"at": r["at"], "actor": r["actor"], "user": r["target"], **(r["details"] or {})} for r in rows]
    return {"data": data, "total": total, "limit": limit, "offset": offset}
