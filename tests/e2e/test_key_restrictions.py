"""Per-key restrictions through HTTP: models, IPs and CIDR (v4, v6), referrers, scopes, rotation, own limits."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway_server import GatewayServer

HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}


def _auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def _key(gw: GatewayServer, owner: str, **fields: Any) -> dict[str, Any]:
    r = httpx.post(gw.url + "/user/api-keys", headers=_auth(owner), json={"name": "k", **fields})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _chat(gw: GatewayServer, key: str, body: dict[str, Any] = HI, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers=_auth(key, **headers), json=body)


def test_model_ip_and_referrer_restrictions(gateway: GatewayServer, user: dict[str, Any]) -> None:
    owner = user["api_key"]
    k = _key(gateway, owner, allowed_models=["test/echo"])["api_key"]
    assert _chat(gateway, k).status_code == 200
    assert _chat(gateway, k, {**HI, "model": "echo"}).status_code == 200  # an alias of an allowed model
    denied = _chat(gateway, k, {**HI, "model": "test/pricey"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "key_model_not_allowed"
    assert _chat(gateway, _key(gateway, owner, allowed_ips=["10.0.0.0/8"])["api_key"]).status_code == 403
    assert _chat(gateway, _key(gateway, owner, allowed_ips=["::1/128"])["api_key"]).status_code == 403
    assert _chat(gateway, _key(gateway, owner, allowed_ips=["127.0.0.0/24", "::1"])["api_key"]).status_code == 200
    bad = httpx.post(gateway.url + "/user/api-keys", headers=_auth(owner), json={"allowed_ips": ["999.1.1.1"]})
    assert bad.status_code == 400
    ref = _key(gateway, owner, allowed_referrers=["app.example.com", "*.example.org"])["api_key"]
    assert _chat(gateway, ref).status_code == 200  # no Referer: server-side use
    assert _chat(gateway, ref, Referer="https://app.example.com/page").status_code == 200
    assert _chat(gateway, ref, Referer="https://www.example.org/").status_code == 200
    assert _chat(gateway, ref, Referer="https://evil.com/").status_code == 403


def test_scopes(gateway: GatewayServer, user: dict[str, Any]) -> None:
    reader = _key(gateway, user["api_key"], scopes=["read"])["api_key"]
    assert _chat(gateway, reader).status_code == 403
    assert httpx.get(gateway.url + "/user/balance", headers=_auth(reader)).status_code == 200
    assert httpx.post(gateway.url + "/user/api-keys", headers=_auth(reader), json={}).status_code == 403
    runner = _key(gateway, user["api_key"], scopes=["inference"])["api_key"]
    assert _chat(gateway, runner).status_code == 200
    assert httpx.get(gateway.url + "/user/balance", headers=_auth(runner)).status_code == 403


def test_update_rotate_and_own_limits_apply_at_once(gateway: GatewayServer, user: dict[str, Any]) -> None:
    owner = user["api_key"]
    made = _key(gateway, owner)
    k, kid = made["api_key"], made["id"]
    assert _chat(gateway, k).status_code == 200  # cached now
    r = httpx.put(f"{gateway.url}/user/api-keys/{kid}", headers=_auth(owner), json={"allowed_models": ["test/pricey"]})
    assert r.status_code == 200 and r.json()["allowed_models"] == ["test/pricey"]
    assert _chat(gateway, k).status_code == 403  # the cached principal was dropped
    rotated = httpx.post(f"{gateway.url}/user/api-keys/{kid}/rotate", headers=_auth(owner)).json()
    assert _chat(gateway, k).status_code == 401
    assert _chat(gateway, rotated["api_key"]).status_code == 403  # same restrictions on the new secret
    httpx.put(f"{gateway.url}/user/api-keys/{rotated['id']}", headers=_auth(owner),
              json={"allowed_models": None}).raise_for_status()
    limits = httpx.put(f"{gateway.url}/user/rate-limits/{rotated['id']}", headers=_auth(owner),
                       json={"rpm_limit": 2}).json()
    assert limits["rpm_limit"] == 2 and limits["requests"]["per_minute"] == 2
    assert [_chat(gateway, rotated["api_key"]).status_code for _ in range(3)] == [200, 200, 429]
    listed = httpx.get(gateway.url + "/user/rate-limits", headers=_auth(owner)).json()["data"]
    assert {row["key_id"] for row in listed} >= {rotated["id"]}


def test_key_creation_is_limited_to_ten_an_hour(gateway: GatewayServer, user: dict[str, Any]) -> None:
    codes = [httpx.post(gateway.url + "/user/api-keys", headers=_auth(user["api_key"]), json={}).status_code
             for _ in range(11)]
    assert codes == [201] * 10 + [429]
