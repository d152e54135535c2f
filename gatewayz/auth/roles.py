"""Roles and what each may do, as data: the route dependencies in gatewayz.api.deps are derived from it, and
GET /admin/roles/permissions/{role} reports it. Each role holds every permission of the roles before it."""

from __future__ import annotations

from gatewayz.users.store import ROLES

ADMIN = "admin"

PERMISSIONS: dict[str, str] = {
    "inference": "call models with an API key",
    "account": "read and manage one's own account: balance, API keys, password, sessions",
    "operations.read": "read provider health, uptime, circuit breakers, probe status and worker health",
    "users.read": "list users and read the audit log (and its verification)",
    "operations.write": "reset circuit breakers, start and stop active probes",
    "metrics.read": "read the Prometheus metrics and their JSON view",
    "users.write": "create users, grant credits, change roles",
}

_LADDER: dict[str, tuple[str, ...]] = {
    "user": ("inference", "account"),
    "developer": ("operations.read",),
    "support": ("users.read",),
    "admin": ("operations.write", "metrics.read", "users.write"),
}


def _build() -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    held: set[str] = set()
    for role in ("user", "developer", "support", "admin"):
        held |= set(_LADDER[role])
        out[role] = frozenset(held)
    assert set(out) == set(ROLES) and held == set(PERMISSIONS)
    return out


ROLE_PERMISSIONS = _build()


def holders(permission: str) -> tuple[str, ...]:
    """The roles that hold a permission, for a route dependency."""
    if permission not in PERMISSIONS:
        raise KeyError(permission)
    return tuple(r for r in ROLES if permission in ROLE_PERMISSIONS[r])
