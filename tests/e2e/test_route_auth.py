"""Every route is authenticated or deliberately public, and admin routes refuse user keys: a walk over the app."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.gateway_server import ADMIN_KEY, GatewayServer

# Deliberately public. Reading routes answer a GET without a key; the account routes (sign-up and log-in take
# e-mail and password, and are limited per address) answer a POST without a key.
PUBLIC_POST = {"/auth/register", "/auth/login"}
PUBLIC = {"/health", "/health/quick", "/health/ready", "/v1/models", "/v1/models/{model_id}", "/health/models",
          "/health/models/uptime", "/v1/status", "/code-router/tiers", "/general-router/settings/options",
          "/openapi.json", "/docs", "/docs/oauth2-redirect", "/plans", "/trial/partner/{code}",
          "/api/stripe/credit-packages"} | PUBLIC_POST | {"/api/stripe/webhook"}   # Stripe signs its webhook
ADMIN_PREFIXES = ("/admin/", "/credits/add", "/credits/adjust", "/refund", "/circuit-breakers", "/health/providers",
                  "/health/monitoring", "/health/system", "/metrics", "/api/metrics/", "/api/monitoring/",
                  "/prometheus/", "/error-monitor/", "/api/instrumentation/", "/api/admin/")
PARAMS = {"provider": "emu-a", "key_id": "1", "model_id": "test/echo", "role": "user"}


def _routes(gateway: GatewayServer) -> list[tuple[str, str]]:
    """Every route of the app: FastAPI's (from its OpenAPI document) and the inference routes outside it."""
    paths = gateway.app.api.openapi()["paths"]
    out = [(method.upper(), path) for path, ops in paths.items() for method in ops]
    return out + list(gateway.app._hot)


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS.get(m.group(1), "1"), path)


def _call(gw: GatewayServer, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, gw.url + _url(path), headers=headers, json={}, timeout=10)


def test_every_route_is_authenticated_or_public(gateway: GatewayServer, user: dict[str, Any]) -> None:
    routes = _routes(gateway)
    assert len(routes) > 30
    as_user = {"Authorization": f"Bearer {user['api_key']}"}
    problems = []
    for method, path in routes:
        if path in PUBLIC:
            continue
        anonymous = _call(gateway, method, path, {})
        if anonymous.status_code != 401:
            problems.append(f"{method} {path}: anonymous got {anonymous.status_code}")
        if path.startswith(ADMIN_PREFIXES):
            refused = _call(gateway, method, path, as_user)
            if refused.status_code != 403:
                problems.append(f"{method} {path}: a user key got {refused.status_code}")
            admitted = _call(gateway, method, path, {"Authorization": f"Bearer {ADMIN_KEY}"})
            if admitted.status_code in (401, 403):
                problems.append(f"{method} {path}: the admin key got {admitted.status_code}")
    assert problems == []


def test_public_routes_answer_without_a_key(gateway: GatewayServer) -> None:
    for path in PUBLIC - PUBLIC_POST - {"/docs/oauth2-redirect", "/api/stripe/webhook"}:
        assert httpx.get(gateway.url + _url(path)).status_code == 200, path
    routes = _routes(gateway)
    for path in PUBLIC_POST:
        assert ("POST", path) in routes, path
        # Without a key, an empty body is refused for what it lacks (400 naming the field), never for the key.
        r = httpx.post(gateway.url + path, json={})
        assert r.status_code == 400 and r.json()["error"]["param"] in ("email", "password"), (path, r.text)
