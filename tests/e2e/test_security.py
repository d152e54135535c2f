"""Ingress security over HTTP: who the client is (trusted proxies, spoofed X-Forwarded-For), CORS on every route
(the raw inference routes too), security headers on the management routes, and hostile input refused without
leaking internals (AC-CC.12.3-7)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import GatewayFactory
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer

CHAT = "/v1/chat/completions"
HI = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}
BAD = {"Authorization": "Bearer gw_live_" + "x" * 43}
ORIGIN = "https://app.example.com"


def _key(gw: GatewayServer, **restrictions: Any) -> str:
    owner = gw.create_user("1")["api_key"]
    r = httpx.post(gw.url + "/user/api-keys", headers={"Authorization": f"Bearer {owner}"},
                   json={"name": "restricted", **restrictions})
    assert r.status_code == 201, r.text
    return str(r.json()["api_key"])


def _chat(gw: GatewayServer, key: str, forwarded: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} | ({"x-forwarded-for": forwarded} if forwarded else {})
    return httpx.post(gw.url + CHAT, json=HI, headers=headers, timeout=20)


def _login(gw: GatewayServer, forwarded: str) -> int:
    return httpx.post(gw.url + "/auth/login", json={"email": "nobody@example.com", "password": "wrong-password"},
                      headers={"x-forwarded-for": forwarded}).status_code


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(gateway_factory: GatewayFactory,
                                                                  emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], limits={"ip_requests_per_minute": 2}, auth={"login_attempts": 2})
    key = _key(gw, allowed_ips=["10.1.2.3"])
    refused = _chat(gw, key, "10.1.2.3")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "key_ip_not_allowed"
    # a new forwarded address per request does not buy a new budget: the peer is the client
    codes = [httpx.post(gw.url + CHAT, json=HI, headers={**BAD, "x-forwarded-for": f"192.0.2.{i}"}).status_code
             for i in range(3)]
    assert codes == [401, 401, 429]
    assert [_login(gw, f"192.0.2.{i}") for i in range(3)] == [401, 401, 429]


def test_trusted_proxies_name_the_client(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], trusted_proxies=["127.0.0.1", "10.0.0.0/8"],
                         limits={"ip_requests_per_minute": 2}, auth={"login_attempts": 2})
    key = _key(gw, allowed_ips=["203.0.113.0/24", "2001:db8::/32"])
    assert _chat(gw, key, "203.0.113.7").status_code == 200
    assert _chat(gw, key, "203.0.113.7, 10.0.0.5").status_code == 200        # a trusted hop is skipped
    assert _chat(gw, key, "[2001:db8::1]:443").status_code == 200
    # the client wrote the left entry; the first untrusted one from the right is who called
    assert _chat(gw, key, "203.0.113.7, 198.51.100.9").status_code == 403
    assert _chat(gw, key, "not-an-address, 10.0.0.5").status_code == 403     # garbage: the trusted hop it is
    assert _chat(gw, key).status_code == 403                                  # no header: the proxy itself

    def bad(ip: str) -> int:
        return httpx.post(gw.url + CHAT, json=HI, headers={**BAD, "x-forwarded-for": ip}).status_code

    assert [bad("198.51.100.1"), bad("198.51.100.1"), bad("198.51.100.2"), bad("198.51.100.2")] == [401] * 4
    r = httpx.post(gw.url + CHAT, json=HI, headers={**BAD, "x-forwarded-for": "198.51.100.1"})
    assert r.status_code == 429 and r.headers["x-ratelimit-reason"] == "ip"
    assert r.headers["x-ratelimit-mode"] == "normal"
    assert [_login(gw, "198.51.100.5"), _login(gw, "198.51.100.5"), _login(gw, "198.51.100.6")] == [401, 401, 401]
    assert _login(gw, "198.51.100.5") == 429


def test_cors_on_inference_and_management_routes(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], cors={"allow_origins": [ORIGIN]})
    key = gw.create_user("1")["api_key"]
    preflight = httpx.options(gw.url + CHAT, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200, preflight.text
    h = preflight.headers
    assert h["access-control-allow-origin"] == ORIGIN and "POST" in h["access-control-allow-methods"]
    assert "authorization" in h["access-control-allow-headers"].lower() and h["access-control-max-age"] == "600"
    answer = httpx.post(gw.url + CHAT, json=HI, headers={"Origin": ORIGIN, "Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-ratelimit-remaining-requests" in answer.headers["access-control-expose-headers"]
    listed = httpx.get(gw.url + "/v1/models", headers={"Origin": ORIGIN})
    assert listed.headers["access-control-allow-origin"] == ORIGIN
    # another origin gets no grant
    evil = httpx.post(gw.url + CHAT, json=HI,
                      headers={"Origin": "https://evil.example", "Authorization": f"Bearer {key}"})
    assert "access-control-allow-origin" not in evil.headers
    refused = httpx.options(gw.url + CHAT, headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "cors_not_allowed"
    assert "origin" in refused.json()["error"]["message"]


def test_no_cors_unless_configured(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a])
    preflight = httpx.options(gw.url + CHAT, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in httpx.get(gw.url + "/v1/models", headers={"Origin": ORIGIN}).headers


def test_security_headers_on_management_routes(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a])
    key = gw.create_user("1")["api_key"]
    for r in (httpx.get(gw.url + "/user/balance", headers={"Authorization": f"Bearer {key}"}),
              httpx.get(gw.url + "/user/balance"), httpx.get(gw.url + "/no/such/route")):
        h = r.headers
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY", r.url
        assert h["referrer-policy"] == "no-referrer"
        assert h["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert "strict-transport-security" not in h
    docs = httpx.get(gw.url + "/docs")  # an HTML page that loads its scripts: no CSP that would block them
    assert docs.status_code == 200 and docs.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in docs.headers

    hsts = gateway_factory([emu_a], security_headers={"hsts_max_age_s": 31536000, "hsts_include_subdomains": True})
    h = httpx.get(hsts.url + "/v1/models").headers
    assert h["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    off = gateway_factory([emu_a], security_headers={"enabled": False})
    assert "x-frame-options" not in httpx.get(off.url + "/v1/models").headers


PAYLOADS = ["'; DROP TABLE users; --", "' OR '1'='1", "<script>alert(1)</script>", "; rm -rf /",
            "$(cat /etc/passwd)", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd"]
LEAKS = ("Traceback", 'File "', "/work/", "site-packages", "sqlalchemy", "gatewayz/", "root:x:0:0")


def test_hostile_reads_paths_and_credentials_never_leak(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    """What tests/e2e/test_injection.py (every write endpoint's body) does not reach: query strings, path segments,
    raw paths, credentials and the login form."""
    gw = gateway_factory([emu_a])
    key = gw.create_user("1")["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    with gw.admin() as admin:
        users_before = admin.get("/admin/users").json()["total"]
    for payload in PAYLOADS:
        answers = {
            "login": httpx.post(gw.url + "/auth/login", json={"email": payload, "password": payload}),
            "model path": httpx.get(gw.url + "/v1/models/" + payload),
            "generation": httpx.get(gw.url + "/v1/generation", params={"id": payload}, headers=auth),
            "key": httpx.post(gw.url + CHAT, json=HI, headers={"Authorization": f"Bearer {payload}"}),
            "raw path": httpx.get(gw.url + "/" + payload.replace("/", "%2F")),
            "allowlist check": httpx.get(gw.url + "/api/admin/ip-whitelist/check", params={"ip": payload},
                                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}),
        }
        for what, r in answers.items():
            assert r.status_code < 500, (what, payload, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json"), what
            if r.status_code >= 400:
                assert set(r.json()) == {"error"} and {"message", "type", "code"} <= set(r.json()["error"]), what
            assert not any(leak in r.text for leak in LEAKS), (what, r.text)
        assert answers["allowlist check"].json()["error"]["code"] == "invalid_ip"
    with gw.admin() as admin:
        assert admin.get("/admin/users").json()["total"] == users_before
    assert _chat(gw, key).status_code == 200  # the gateway and its tables are intact


def test_malformed_requests_never_leak(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a])
    auth = {"Authorization": f"Bearer {gw.create_user('1')['api_key']}", "content-type": "application/json"}
    bodies = [b"{", b"[]", b"null", b'{"model": 1, "messages": "x"}', b'{"model": "test/echo", "messages": []}',
              b'{"model": "test/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999}',
              b'{"model": "test/echo", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
              "\ud800".encode("utf-8", "surrogatepass")]
    for body in bodies:
        for path in (CHAT, "/v1/messages", "/user/api-keys", "/auth/login"):
            r = httpx.post(gw.url + path, content=body, headers=auth)
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
            assert not any(leak in r.text for leak in LEAKS), (path, body, r.text)
