"""/api/admin/ip-whitelist: CRUD (IPv4, IPv6, CIDR), the check route, audit rows, enforcement on inference (per
user and global, on top of a key's own allowed_ips), and every worker seeing a change."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import GatewayFactory
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate
from tests.net import wait_until
from tests.redis_server import RedisServer

BASE = "/api/admin/ip-whitelist"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}


def _chat(gw: GatewayServer, key: str, ip: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json=HI,
                      headers={"Authorization": f"Bearer {key}", "x-forwarded-for": ip}, timeout=20)



def test_crud_validation_check_and_audit(gateway_factory: GatewayFactory, emu_a: Emulator, backend: str) -> None:
    gw = gateway_factory([emu_a], backend=backend)
    user = gw.create_user("1")
    with gw.admin() as admin:
        made = admin.post(BASE, json={"ip": "1.2.3.4", "description": "office"})
        assert made.status_code == 201, made.text
        one = made.json()
        assert one["cidr"] == "1.2.3.4/32" and one["user_id"] is None and one["scope"] == "global"
        net = admin.post(BASE, json={"cidr": "10.0.0.7/24", "user_id": user["id"]}).json()
        assert net["cidr"] == "10.0.0.0/24" and net["user_id"] == user["id"] and net["scope"] == "user"
        v6 = admin.post(BASE, json={"cidr": "2001:db8::/32"}).json()
        assert v6["cidr"] == "2001:db8::/32"
        for bad in ({"ip": "1.2.3.999"}, {"cidr": "10.0.0.0/33"}, {"ip": "example.com"}, {},
                    {"ip": "1.2.3.4", "cidr": "1.2.3.4"}, {"ip": "1.2.3.4", "extra": 1}):
            r = admin.post(BASE, json=bad)
            assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (bad, r.text)
        assert admin.post(BASE, json={"ip": "1.2.3.4", "user_id": 999999}).status_code == 404

        listed = admin.get(BASE).json()
        assert [e["cidr"] for e in listed["data"]] == ["1.2.3.4/32", "10.0.0.0/24", "2001:db8::/32"]
        assert [e["id"] for e in admin.get(BASE, params={"user_id": user["id"]}).json()["data"]] == [net["id"]]
        assert len(admin.get(BASE, params={"scope": "global"}).json()["data"]) == 2
        assert admin.get(f"{BASE}/{one['id']}").json()["description"] == "office"

        changed = admin.patch(f"{BASE}/{one['id']}", json={"cidr": "1.2.3.0/28", "description": "new office"})
        assert changed.status_code == 200 and changed.json()["cidr"] == "1.2.3.0/28"
        assert admin.patch(f"{BASE}/{one['id']}", json={"cidr": None}).status_code == 400
        assert admin.patch(f"{BASE}/999999", json={"description": "x"}).status_code == 404

        def check(ip: str, user_id: int | None = None) -> dict[str, Any]:
            params: dict[str, Any] = {"ip": ip} | ({"user_id": user_id} if user_id else {})
            got = admin.get(f"{BASE}/check", params=params)
            posted = admin.post(f"{BASE}/check", json=params)
            assert got.status_code == posted.status_code == 200 and got.json() == posted.json(), got.text
            return got.json()  # type: ignore[no-any-return]

        inside = check("1.2.3.5")
        assert inside["allowed"] and inside["enforced"] and inside["entry"]["id"] == one["id"]
        assert check("2001:db8:1::9")["entry"]["id"] == v6["id"]
        blocked = check("5.6.7.8")
        assert blocked == {"ip": "5.6.7.8", "user_id": None, "allowed": False, "enforced": True, "entry": None}
        assert check("10.0.0.9", user["id"])["entry"]["id"] == net["id"]
        assert not check("10.0.0.9")["allowed"]  # the user's entry is not the others'
        assert admin.get(f"{BASE}/check", params={"ip": "1.2.3.4", "user_id": 999999}).status_code == 404
        assert admin.post(f"{BASE}/check", json={"ip": "10.0.0.0/8"}).json()["error"]["code"] == "invalid_ip"

        for entry in (one, net, v6):
            assert admin.delete(f"{BASE}/{entry['id']}").json() == {"id": entry["id"], "deleted": True}
        assert admin.delete(f"{BASE}/{one['id']}").status_code == 404
        assert check("5.6.7.8") == {"ip": "5.6.7.8", "user_id": None, "allowed": True, "enforced": False,
                                    "entry": None}
        actions = [e["action"] for e in admin.get("/admin/audit").json()["data"]]
    assert actions.count("ip_whitelist.create") == 3 and actions.count("ip_whitelist.update") == 1
    assert actions.count("ip_whitelist.delete") == 3
    r = httpx.get(gw.url + BASE, headers={"Authorization": f"Bearer {user['api_key']}"})
    assert r.status_code == 403


def test_enforced_on_inference_per_user_and_globally(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], trusted_proxies=["127.0.0.1"])
    alice, bob = gw.create_user("1"), gw.create_user("1")
    with gw.admin() as admin:
        entry = admin.post(BASE, json={"cidr": "203.0.113.0/24", "user_id": alice["id"]}).json()
        assert _chat(gw, alice["api_key"], "203.0.113.5").status_code == 200
        refused = _chat(gw, alice["api_key"], "198.51.100.1")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "ip_not_allowlisted"
        assert _chat(gw, bob["api_key"], "198.51.100.1").status_code == 200  # no entries: any address

        # a key's own allowed_ips still apply on top
        narrow = httpx.post(gw.url + "/user/api-keys", headers={"Authorization": f"Bearer {alice['api_key']}"},
                            json={"name": "narrow", "allowed_ips": ["203.0.113.9"]}).json()["api_key"]
        assert _chat(gw, narrow, "203.0.113.9").status_code == 200
        assert _chat(gw, narrow, "203.0.113.5").json()["error"]["code"] == "key_ip_not_allowed"

        # a global entry restricts everyone; alice keeps her own range as well
        office = admin.post(BASE, json={"cidr": "192.0.2.0/24"}).json()
        assert _chat(gw, bob["api_key"], "198.51.100.1").status_code == 403
        assert _chat(gw, bob["api_key"], "192.0.2.77").status_code == 200
        assert _chat(gw, alice["api_key"], "192.0.2.77").status_code == 200
        assert _chat(gw, alice["api_key"], "203.0.113.5").status_code == 200

        admin.delete(f"{BASE}/{office['id']}")
        admin.delete(f"{BASE}/{entry['id']}")
    assert _chat(gw, alice["api_key"], "198.51.100.1").status_code == 200  # at once


def test_every_gateway_sees_a_change(gateway_factory: GatewayFactory, emu_a: Emulator,
                                     private_redis: RedisServer, tmp_path: Any) -> None:
    """Two gateways on one database: with Redis the change is announced at once; without it, gateways that run
    several workers reload every couple of seconds."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    migrate(db)
    common: dict[str, Any] = {"db_url": db, "trusted_proxies": ["127.0.0.1"], "credits": {"authority": "sql"}}
    a = gateway_factory([emu_a], redis_url=private_redis.url, **common)
    b = gateway_factory([emu_a], redis_url=private_redis.url, **common)
    polled = gateway_factory([emu_a], workers=2, **common)
    user = a.create_user("5")
    for gw in (a, b, polled):
        assert _chat(gw, user["api_key"], "198.51.100.1").status_code == 200
    r = httpx.post(a.url + BASE, headers=ADMIN, json={"cidr": "203.0.113.0/24", "user_id": user["id"]})
    assert r.status_code == 201
    assert _chat(a, user["api_key"], "198.51.100.1").status_code == 403
    assert wait_until(lambda: _chat(b, user["api_key"], "198.51.100.1").status_code == 403, 1.0)
    assert wait_until(lambda: _chat(polled, user["api_key"], "198.51.100.1").status_code == 403, 6.0)
    assert _chat(b, user["api_key"], "203.0.113.1").status_code == 200
    httpx.delete(f"{b.url}{BASE}/{r.json()['id']}", headers=ADMIN)
    assert wait_until(lambda: _chat(a, user["api_key"], "198.51.100.1").status_code == 200, 1.0)
