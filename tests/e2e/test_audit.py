"""Key events, admin actions and refused admin access land in the audit log, whose chain verifies."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway_server import ADMIN_KEY, GatewayServer

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_audit_trail(gateway: GatewayServer, user: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {user['api_key']}"}
    made = httpx.post(gateway.url + "/user/api-keys", headers=auth, json={"name": "ci"}).json()
    httpx.put(f"{gateway.url}/user/api-keys/{made['id']}", headers=auth, json={"allowed_models": ["test/echo"]})
    httpx.delete(f"{gateway.url}/user/api-keys/{made['id']}", headers=auth)
    httpx.post(gateway.url + "/credits/add", headers=ADMIN, json={"user_id": user["id"], "amount": "1"})
    assert httpx.get(gateway.url + "/admin/users", headers=auth).status_code == 403
    log = httpx.get(gateway.url + "/admin/audit?limit=100", headers=ADMIN).json()
    actions = [e["action"] for e in log["data"]]
    for expected in ("user.create", "key.create", "key.update", "key.delete", "credits.add",
                     "security.admin_denied"):
        assert expected in actions, expected
    denied = next(e for e in log["data"] if e["action"] == "security.admin_denied")
    assert denied["actor"] == f"user:{user['id']}" and denied["target"] == "/admin/users"
    assert all(user["api_key"] not in str(e) for e in log["data"])  # secrets never logged
    assert httpx.get(gateway.url + "/admin/audit/verify", headers=ADMIN).json()["valid"] is True
    only = httpx.get(gateway.url + "/admin/audit?action=key.delete", headers=ADMIN).json()
    assert only["total"] == 1
