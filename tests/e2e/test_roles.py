"""Roles over real HTTP: which role reaches which admin route (by API key and by session), every refusal a 403
with a security row in the audit log; role changes with a reason, audited, effective at once; the last-admin
and own-role rules; each role's permissions."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx

from tests.gateway_server import ADMIN_KEY, GatewayServer

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ROLES = ("user", "developer", "support", "admin")
PASSWORD = "staff password 123"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_user(gw: GatewayServer, role: str = "user") -> dict[str, Any]:
    r = httpx.post(gw.url + "/admin/users", headers=ADMIN, json={
        "email": f"{role}-{uuid.uuid4().hex[:8]}@example.com", "credits": "1", "role": role})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def session_of(gw: GatewayServer, user: dict[str, Any]) -> str:
    set_pw = httpx.post(gw.url + "/user/password", headers=bearer(user["api_key"]), json={"password": PASSWORD})
    assert set_pw.status_code == 200, set_pw.text
    r = httpx.post(gw.url + "/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["session_token"])


def set_role(gw: GatewayServer, headers: dict[str, str], user_id: int, role: str,
             reason: str = "rota change") -> httpx.Response:
    return httpx.put(f"{gw.url}/admin/users/{user_id}/role", headers=headers, json={"role": role, "reason": reason})


def denied_rows(gw: GatewayServer) -> list[dict[str, Any]]:
    r = httpx.get(gw.url + "/admin/audit?action=security.admin_denied&limit=1000", headers=ADMIN)
    return r.json()["data"]  # type: ignore[no-any-return]


def _matrix(target: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """(method, path, body, the least role admitted)."""
    return [
        ("GET", "/admin/users", None, "support"),
        ("GET", "/admin/audit", None, "support"),
        ("GET", "/admin/audit/verify", None, "support"),
        ("GET", "/admin/roles/permissions/developer", None, "support"),
        ("GET", "/admin/roles/audit/log", None, "support"),
        ("GET", "/circuit-breakers", None, "developer"),
        ("GET", "/health/providers", None, "developer"),
        ("GET", "/health/system", None, "developer"),
        ("GET", "/health/monitoring", None, "developer"),
        ("POST", "/admin/users", {"email": f"n{uuid.uuid4().hex[:8]}@example.com"}, "admin"),
        ("POST", "/credits/add", {"user_id": target["id"], "amount": "1"}, "admin"),
        ("POST", "/circuit-breakers/reset-all", None, "admin"),
        ("PUT", f"/admin/users/{target['id']}/role", {"role": "user", "reason": "matrix check"}, "admin"),
        ("GET", "/metrics", None, "admin"),
        ("GET", "/api/metrics/parsed", None, "admin"),
    ]


def test_role_matrix_with_api_keys(gateway: GatewayServer) -> None:
    people = {role: make_user(gateway, role) for role in ROLES}
    target = make_user(gateway)
    refused: Counter[str] = Counter()
    for role, person in people.items():
        for method, path, body, least in _matrix(target):
            r = httpx.request(method, gateway.url + path, headers=bearer(person["api_key"]), json=body)
            if ROLES.index(role) >= ROLES.index(least):
                assert r.status_code < 300, (role, method, path, r.status_code, r.text)
            else:
                assert r.status_code == 403, (role, method, path, r.status_code)
                err = r.json()["error"]
                assert err["type"] == "permission_error" and err["code"] == "admin_required"
                refused[f"user:{person['id']}"] += 1
    assert refused[f"user:{people['admin']['id']}"] == 0
    assert refused[f"user:{people['user']['id']}"] == len(_matrix(target))  # the user role reaches none of them
    assert refused[f"user:{people['developer']['id']}"] == 11 and refused[f"user:{people['support']['id']}"] == 6
    rows = denied_rows(gateway)
    assert Counter(r["actor"] for r in rows) == refused  # one security row per refusal, no more
    row = next(r for r in rows if r["actor"] == f"user:{people['support']['id']}" and r["target"] == "/credits/add")
    assert row["details"]["role"] == "support" and row["details"]["method"] == "POST"
    assert row["details"]["needs"] == ["admin"] and row["details"]["session"] is False


def test_sessions_carry_the_role(gateway: GatewayServer) -> None:
    admin = make_user(gateway, "admin")
    support = make_user(gateway, "support")
    admin_session, support_session = session_of(gateway, admin), session_of(gateway, support)
    assert httpx.get(gateway.url + "/admin/users", headers=bearer(admin_session)).status_code == 200
    created = httpx.post(gateway.url + "/admin/users", headers=bearer(admin_session),
                         json={"email": f"s{uuid.uuid4().hex[:8]}@example.com"})
    assert created.status_code == 201
    assert httpx.get(gateway.url + "/admin/audit", headers=bearer(support_session)).status_code == 200
    grant = httpx.post(gateway.url + "/credits/add", headers=bearer(support_session),
                       json={"user_id": support["id"], "amount": "5"})
    assert grant.status_code == 403
    row = next(r for r in denied_rows(gateway) if r["actor"] == f"user:{support['id']}")
    assert row["target"] == "/credits/add" and row["details"]["session"] is True
    log = httpx.get(gateway.url + "/admin/audit?action=user.create", headers=ADMIN).json()["data"]
    assert any(e["actor"] == f"user:{admin['id']}" and e["target"] == f"user:{created.json()['id']}" for e in log)


def test_role_change_is_audited_with_its_reason_and_takes_effect_at_once(gateway: GatewayServer) -> None:
    person = make_user(gateway)
    session = session_of(gateway, person)
    for body, param in (({"role": "support"}, "reason"), ({"role": "support", "reason": "ok"}, "reason"),
                        ({"role": "root", "reason": "promotion"}, "role"),
                        ({"role": "support", "reason": "x" * 501}, "reason")):
        r = httpx.put(f"{gateway.url}/admin/users/{person['id']}/role", headers=ADMIN, json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    assert set_role(gateway, ADMIN, 999_999, "support").status_code == 404

    for creds in (person["api_key"], session):
        assert httpx.get(gateway.url + "/admin/users", headers=bearer(creds)).status_code == 403
    r = set_role(gateway, ADMIN, person["id"], "support", "  joins the on-call support rota  ")
    assert r.json() == {"id": person["id"], "role": "support", "previous_role": "user", "changed": True}
    for creds in (person["api_key"], session):  # the API key's cached verification was dropped
        assert httpx.get(gateway.url + "/admin/users", headers=bearer(creds)).status_code == 200
    again = set_role(gateway, ADMIN, person["id"], "support")
    assert again.status_code == 200 and again.json()["changed"] is False

    log = httpx.get(gateway.url + "/admin/roles/audit/log", headers=bearer(person["api_key"])).json()
    assert log["total"] == 1  # the change that changed nothing wrote nothing
    entry = log["data"][0]
    assert entry["actor"] == "admin" and entry["user"] == f"user:{person['id']}" and entry["at"]
    assert (entry["old_role"], entry["new_role"], entry["reason"]) == ("user", "support",
                                                                       "joins the on-call support rota")
    assert httpx.get(gateway.url + "/admin/audit/verify", headers=ADMIN).json()["valid"] is True


def test_last_admin_and_own_role(gateway: GatewayServer) -> None:
    first = make_user(gateway, "admin")
    other = make_user(gateway)
    last = set_role(gateway, ADMIN, first["id"], "user")
    assert last.status_code == 409 and last.json()["error"]["code"] == "last_admin"
    own = set_role(gateway, bearer(first["api_key"]), first["id"], "user")
    assert own.status_code == 403 and own.json()["error"]["code"] == "own_role"
    assert httpx.get(gateway.url + "/admin/users", headers=bearer(first["api_key"])).status_code == 200

    promoted = set_role(gateway, bearer(first["api_key"]), other["id"], "admin", "second admin for holidays")
    assert promoted.status_code == 200
    assert set_role(gateway, ADMIN, first["id"], "developer").status_code == 200  # another admin remains
    assert httpx.get(gateway.url + "/admin/users", headers=bearer(first["api_key"])).status_code == 403
    assert httpx.get(gateway.url + "/circuit-breakers", headers=bearer(first["api_key"])).status_code == 200
    assert set_role(gateway, ADMIN, other["id"], "user").json()["error"]["code"] == "last_admin"
    log = httpx.get(gateway.url + "/admin/roles/audit/log", headers=ADMIN).json()["data"]
    assert [(e["actor"], e["new_role"]) for e in log] == [("admin", "developer"), (f"user:{first['id']}", "admin")]
    assert log[1]["reason"] == "second admin for holidays"


def test_role_permissions(gateway: GatewayServer) -> None:
    gw = gateway
    held = {}
    for role in ROLES:
        r = httpx.get(f"{gw.url}/admin/roles/permissions/{role}", headers=ADMIN)
        assert r.status_code == 200 and r.json()["role"] == role
        held[role] = {p["name"] for p in r.json()["permissions"]}
        assert all(p["description"] for p in r.json()["permissions"])
    assert held["user"] == {"inference", "account"}
    assert held["developer"] == held["user"] | {"operations.read"}
    assert held["support"] == held["developer"] | {"users.read"}
    assert held["admin"] == held["support"] | {"operations.write", "metrics.read", "users.write"}
    unknown = httpx.get(f"{gw.url}/admin/roles/permissions/root", headers=ADMIN)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "role_not_found"
