"""/api/admin/ip-whitelist: list, create, update and delete allowlist entries, and check an address (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gatewayz.allowlist.service import normalize
from gatewayz.api.client_ip import parse_address
from gatewayz.api.deps import Admin, ContainerDep, actor_of
from gatewayz.container import Container
from gatewayz.errors import InvalidRequest, NotFound

router = APIRouter(prefix="/api/admin/ip-whitelist", tags=["admin"])


def _address(v: str | None) -> str | None:
    if v is None:
        return None
    try:
        return normalize(v)
    except ValueError:
        raise ValueError(f"{v!r} is not an IPv4 or IPv6 address or CIDR range") from None


class NewEntry(BaseModel):
    """`ip` and `cidr` are the same field (either name is accepted): an address or a CIDR range."""

    model_config = ConfigDict(extra="forbid")
    cidr: str | None = Field(default=None, min_length=2, max_length=64)
    ip: str | None = Field(default=None, min_length=2, max_length=64)
    user_id: int | None = Field(default=None, ge=1)
    description: str | None = Field(default=None, max_length=500)

    _check = field_validator("cidr", "ip")(_address)

    @model_validator(mode="after")
    def _one_address(self) -> NewEntry:
        if (self.cidr is None) == (self.ip is None):
            raise ValueError("give the address or range as `cidr` (or `ip`), once")
        return self

    @property
    def network(self) -> str:
        return self.cidr or self.ip or ""


class EntryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cidr: str | None = Field(default=None, min_length=2, max_length=64)
    description: str | None = Field(default=None, max_length=500)

    _check = field_validator("cidr")(_address)

    @model_validator(mode="after")
    def _keeps_address(self) -> EntryUpdate:
        if "cidr" in self.model_fields_set and self.cidr is None:
            raise ValueError("an entry's address cannot be cleared; delete the entry instead")
        return self


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ip: str = Field(min_length=2, max_length=64)
    user_id: int | None = Field(default=None, ge=1)


async def _known_user(c: Container, user_id: int | None) -> None:
    if user_id is not None and await c.users.get(user_id) is None:
        raise NotFound(f"No user {user_id}.", param="user_id", code="user_not_found")


def _missing(entry_id: int) -> NotFound:
    return NotFound(f"No IP allowlist entry {entry_id}.", code="ip_whitelist_entry_not_found")


@router.get("")
async def list_entries(admin: Admin, c: ContainerDep, user_id: int | None = Query(None, ge=1),
                       scope: str | None = Query(None, pattern="^(global|user)$")) -> dict[str, Any]:
    entries = await c.allowlist.store.all()
    if user_id is not None:
        entries = [e for e in entries if e.user_id == user_id]
    if scope is not None:
        entries = [e for e in entries if (e.user_id is None) == (scope == "global")]
    return {"data": [e.json() for e in entries], "total": len(entries)}


@router.post("", status_code=201)
async def create_entry(body: NewEntry, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    """A global entry (no `user_id`) restricts every inference request to the global entries (plus the
    caller's own); a user's entry restricts that user's requests to theirs (plus the global ones)."""
    await _known_user(c, body.user_id)
    entry = await c.allowlist.create(body.network, body.user_id, body.description)
    await c.audit.append(actor_of(admin), "ip_whitelist.create", f"ip_whitelist:{entry.id}",
                         {"cidr": entry.cidr, "user_id": entry.user_id})
    return entry.json()


async def _check(c: Container, ip: str, user_id: int | None) -> dict[str, Any]:
    if parse_address(ip) is None:
        raise InvalidRequest(f"{ip!r} is not an IPv4 or IPv6 address.", param="ip", code="invalid_ip")
    await _known_user(c, user_id)
    return {"ip": ip, "user_id": user_id, **c.allowlist.verdict(user_id, ip).json()}


@router.get("/check")
async def check_get(admin: Admin, c: ContainerDep, ip: str = Query(min_length=2, max_length=64),
                    user_id: int | None = Query(None, ge=1)) -> dict[str, Any]:
    """Whether requests from `ip` (by `user_id`, or by anyone) are allowed, and by which entry."""
    return await _check(c, ip, user_id)


@router.post("/check")
async def check_post(body: CheckIn, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    return await _check(c, body.ip, body.user_id)


@router.get("/{entry_id}")
async def get_entry(entry_id: int, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    entry = await c.allowlist.store.get(entry_id)
    if entry is None:
        raise _missing(entry_id)
    return entry.json()


@router.patch("/{entry_id}")
async def update_entry(entry_id: int, body: EntryUpdate, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    values: dict[str, Any] = {f: getattr(body, f) for f in ("cidr", "description") if f in body.model_fields_set}
    entry = await c.allowlist.update(entry_id, values)
    if entry is None:
        raise _missing(entry_id)
    await c.audit.append(actor_of(admin), "ip_whitelist.update", f"ip_whitelist:{entry_id}", values)
    return entry.json()


@router.delete("/{entry_id}")
async def delete_entry(entry_id: int, admin: Admin, c: ContainerDep) -> dict[str, Any]:
    entry = await c.allowlist.delete(entry_id)
    if entry is None:
        raise _missing(entry_id)
    await c.audit.append(actor_of(admin), "ip_whitelist.delete", f"ip_whitelist:{entry_id}",
                         {"cidr": entry.cidr, "user_id": entry.user_id})
    return {"id": entry_id, "deleted": True}
