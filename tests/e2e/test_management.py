"""Management end to end: users, balances, API keys (storage, revocation, expiry), health, models, the CLI."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from gatewayz import __version__
from gatewayz.keys.crypto import KeyCipher
from gatewayz.settings import Settings
from gatewayz.storage.schema import api_keys, credit_transactions, users
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer

KEY_RE = re.compile(r"^gw_live_[A-Za-z0-9_-]{43}$")
ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "gatewayz"
if not CLI.exists():
    CLI = Path(sys.executable).with_name("gatewayz")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin() -> dict[str, str]:
    return bearer(ADMIN_KEY)


def email() -> str:
    return f"m{uuid.uuid4().hex[:12]}@example.com"


def select_rows(gw: GatewayServer, stmt: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        async with gw.container.db.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]
    return gw.run(run())  # type: ignore[no-any-return]


def chat(gw: GatewayServer, key: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers=bearer(key), timeout=30,
                      json={"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]})


def new_key(gw: GatewayServer, owner_key: str, name: str = "extra", **extra: Any) -> httpx.Response:
    return httpx.post(gw.url + "/user/api-keys", headers=bearer(owner_key), json={"name": name, **extra})


# --------------------------------------------------------------------------------------------------- users


def test_admin_creates_users(gateway: GatewayServer) -> None:
    address = email()
    r = httpx.post(gateway.url + "/admin/users", headers=admin(),
                   json={"email": address, "credits": "2.5", "role": "developer"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert isinstance(body["id"], int)
    assert body["email"] == address
    assert body["role"] == "developer"
    assert KEY_RE.match(body["api_key"]), body["api_key"]
    assert body["balance"] == 2.5
    # The new key works at once and sees the opening credits, which have their ledger row.
    r = httpx.get(gateway.url + "/user/balance", headers=bearer(body["api_key"]))
    assert r.status_code == 200 and r.json()["balance"] == 2.5
    rows = select_rows(gateway, sa.select(credit_transactions).where(credit_transactions.c.user_id == body["id"]))
    assert [(t["type"], t["amount_nanos"]) for t in rows] == [("admin_credit", 2_500_000_000)]
    stored = select_rows(gateway, sa.select(users).where(users.c.id == body["id"]))[0]
    assert stored["balance_nanos"] == 2_500_000_000 and stored["role"] == "developer"


def test_duplicate_email_is_a_conflict(gateway: GatewayServer) -> None:
    address = email()
    first = httpx.post(gateway.url + "/admin/users", headers=admin(), json={"email": address, "credits": "1"})
    assert first.status_code == 201
    for again in (address, address.upper()):
        r = httpx.post(gateway.url + "/admin/users", headers=admin(), json={"email": again, "credits": "1"})
        assert r.status_code == 409, (again, r.text)
        assert r.json()["error"]["code"] == "email_taken"
    assert len(select_rows(gateway, sa.select(users).where(users.c.email == address))) == 1


def test_invalid_user_requests_are_400(gateway: GatewayServer) -> None:
    for body in ({"email": "not-an-email"}, {"email": email(), "credits": "-1"}, {"email": email(), "role": "root"},
                 {"email": email(), "credits": "0.0000000001"}):
        r = httpx.post(gateway.url + "/admin/users", headers=admin(), json=body)
        assert r.status_code == 400, (body, r.text)


def test_list_users_with_real_total(gateway: GatewayServer) -> None:
    created = [gateway.create_user("1") for _ in range(3)]
    in_db = len(select_rows(gateway, sa.select(users.c.id)))
    r = httpx.get(gateway.url + "/admin/users", headers=admin(), params={"limit": 2})
    assert r.status_code == 200
    page = r.json()
    assert len(page["data"]) == 2
    assert page["total"] == in_db >= 3
    everyone = httpx.get(gateway.url + "/admin/users", headers=admin(), params={"limit": 1000}).json()
    assert everyone["total"] == in_db == len(everyone["data"])
    listed = {u["email"] for u in everyone["data"]}
    assert {c["email"] for c in created} <= listed
    second = httpx.get(gateway.url + "/admin/users", headers=admin(), params={"limit": 2, "offset": 2}).json()
    assert second["total"] == in_db
    assert {u["id"] for u in second["data"]}.isdisjoint({u["id"] for u in page["data"]})
    assert all(c["api_key"] not in r.text for c in created)


def test_admin_routes_refuse_user_keys(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = httpx.post(gateway.url + "/admin/users", headers=bearer(user["api_key"]), json={"email": email()})
    assert r.status_code == 403
    assert httpx.get(gateway.url + "/admin/users", headers=bearer(user["api_key"])).status_code == 403
    assert httpx.get(gateway.url + "/admin/users").status_code == 401


def test_user_balance(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = httpx.get(gateway.url + "/user/balance", headers=bearer(user["api_key"]))
    assert r.status_code == 200
    body = r.json()
    assert body["balance"] == 10.0
    assert body["currency"] == "USD"
    assert httpx.get(gateway.url + "/user/balance").status_code == 401
    assert httpx.get(gateway.url + "/user/balance", headers=bearer("gw_live_" + "x" * 43)).status_code == 401


# ------------------------------------------------------------------------------------------------- API keys


def test_create_and_list_keys_never_reveals_secrets(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = new_key(gateway, user["api_key"], "ci key")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == "ci key"
    assert KEY_RE.match(created["api_key"])
    assert created["last4"] == created["api_key"][-4:]
    assert created["api_key"] != user["api_key"]
    # The new key belongs to the same user.
    r = httpx.get(gateway.url + "/user/balance", headers=bearer(created["api_key"]))
    assert r.status_code == 200 and r.json()["balance"] == 10.0

    listing = httpx.get(gateway.url + "/user/api-keys", headers=bearer(user["api_key"]))
    assert listing.status_code == 200
    items = listing.json()["data"]
    by_id = {k["id"]: k for k in items}
    assert by_id[created["id"]]["last4"] == created["api_key"][-4:]
    assert by_id[created["id"]]["name"] == "ci key"
    assert by_id[user["key_id"]]["last4"] == user["api_key"][-4:]
    for secret in (created["api_key"], user["api_key"]):
        assert secret not in listing.text
        assert secret[8:] not in listing.text
    assert all("api_key" not in k for k in items)


def test_deleted_key_is_refused_on_the_very_next_request(gateway: GatewayServer, user: dict[str, Any]) -> None:
    extra = new_key(gateway, user["api_key"]).json()
    # Used successfully (so its verification is cached) right before it is deleted.
    assert chat(gateway, extra["api_key"]).status_code == 200
    assert httpx.get(gateway.url + "/user/balance", headers=bearer(extra["api_key"])).status_code == 200
    r = httpx.delete(f"{gateway.url}/user/api-keys/{extra['id']}", headers=bearer(user["api_key"]))
    assert r.status_code == 200, r.text
    r = chat(gateway, extra["api_key"])
    assert r.status_code == 401, r.text
    assert httpx.get(gateway.url + "/user/balance", headers=bearer(extra["api_key"])).status_code == 401
    # Gone from the listing, and deleting it again is a 404; the other key still works.
    ids = [k["id"] for k in httpx.get(gateway.url + "/user/api-keys", headers=bearer(user["api_key"])).json()["data"]]
    assert extra["id"] not in ids and user["key_id"] in ids
    r = httpx.delete(f"{gateway.url}/user/api-keys/{extra['id']}", headers=bearer(user["api_key"]))
    assert r.status_code == 404
    assert chat(gateway, user["api_key"]).status_code == 200


def test_a_key_can_delete_itself(gateway: GatewayServer, user: dict[str, Any]) -> None:
    extra = new_key(gateway, user["api_key"]).json()
    r = httpx.delete(f"{gateway.url}/user/api-keys/{extra['id']}", headers=bearer(extra["api_key"]))
    assert r.status_code == 200
    assert httpx.get(gateway.url + "/user/balance", headers=bearer(extra["api_key"])).status_code == 401


def test_deleting_another_users_key_is_404(gateway: GatewayServer, user: dict[str, Any]) -> None:
    other = gateway.create_user("1")
    assert chat(gateway, other["api_key"]).status_code == 200
    r = httpx.delete(f"{gateway.url}/user/api-keys/{other['key_id']}", headers=bearer(user["api_key"]))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "api_key_not_found"
    assert chat(gateway, other["api_key"]).status_code == 200
    stored = select_rows(gateway, sa.select(api_keys).where(api_keys.c.id == other["key_id"]))[0]
    assert stored["is_active"] is True


def test_key_expiry(gateway: GatewayServer, user: dict[str, Any]) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = new_key(gateway, user["api_key"], "old", expires_at=past)
    assert r.status_code == 400, r.text
    expires = datetime.now(UTC) + timedelta(seconds=2)
    r = new_key(gateway, user["api_key"], "short", expires_at=expires.isoformat())
    assert r.status_code == 201, r.text
    short = r.json()["api_key"]
    assert chat(gateway, short).status_code == 200
    assert httpx.get(gateway.url + "/user/balance", headers=bearer(short)).status_code == 200
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    for r in (chat(gateway, short), httpx.get(gateway.url + "/user/balance", headers=bearer(short))):
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "expired_api_key"
    assert chat(gateway, user["api_key"]).status_code == 200


@pytest.fixture
def tokyo_time() -> Iterator[None]:
    """Run with the process's local time zone 9 hours ahead of UTC (a server not configured for UTC)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "JST-9"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_key_expiry_does_not_depend_on_the_server_time_zone(gateway: GatewayServer, user: dict[str, Any],
                                                            tokyo_time: None) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    r = new_key(gateway, user["api_key"], "hour", expires_at=expires.isoformat())
    assert r.status_code == 201, r.text
    hour_key = r.json()["api_key"]
    r = httpx.get(gateway.url + "/user/balance", headers=bearer(hour_key))
    assert r.status_code == 200, f"a key valid for another hour was refused: {r.text}"


def test_keys_are_encrypted_at_rest(gateway: GatewayServer, user: dict[str, Any]) -> None:
    extra = new_key(gateway, user["api_key"]).json()
    for key_id, secret in ((user["key_id"], user["api_key"]), (extra["id"], extra["api_key"])):
        row = select_rows(gateway, sa.select(api_keys).where(api_keys.c.id == key_id))[0]
        encrypted, key_hash = row["encrypted_key"], row["key_hash"]
        assert encrypted.startswith("gAAAAA")  # Fernet token, version 0x80
        assert secret not in encrypted and secret[8:] not in encrypted
        assert re.fullmatch(r"[0-9a-f]{64}", key_hash)
        assert key_hash != secret and secret not in key_hash
        assert row["last4"] == secret[-4:]
        assert gateway.container.cipher.decrypt(encrypted) == secret
        assert gateway.container.cipher.lookup_hash(secret) == key_hash
    # Nothing in the keys table holds a key in the clear.
    dump = repr(select_rows(gateway, sa.select(api_keys)))
    assert user["api_key"] not in dump and extra["api_key"] not in dump


# ------------------------------------------------------------------------------------------- health, models


def test_health(gateway: GatewayServer) -> None:
    r = httpx.get(gateway.url + "/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert datetime.fromisoformat(body["timestamp"])
    assert body["checks"]["database"]["status"] == "ok"
    r = httpx.get(gateway.url + "/health/quick")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_models_listing(gateway: GatewayServer, user: dict[str, Any]) -> None:
    r = httpx.get(gateway.url + "/v1/models", headers=bearer(user["api_key"]))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    models = {m["id"]: m for m in body["data"]}
    assert "test/unpriced" not in models
    assert set(models) == {"test/echo", "test/pricey"}
    echo = models["test/echo"]
    assert echo["object"] == "model"
    assert echo["context_length"] == 8192
    assert echo["providers"] == ["emu-a", "emu-b"]
    assert float(echo["pricing"]["prompt"]) == pytest.approx(1e-6)
    assert float(echo["pricing"]["completion"]) == pytest.approx(2e-6)
    assert "echo" in echo["aliases"]

    r = httpx.get(gateway.url + "/v1/models/echo", headers=bearer(user["api_key"]))
    assert r.status_code == 200 and r.json()["id"] == "test/echo"
    r = httpx.get(gateway.url + "/v1/models/test/echo", headers=bearer(user["api_key"]))
    assert r.status_code == 200 and r.json()["id"] == "test/echo"
    for missing in ("test/unpriced", "no/such-model"):
        r = httpx.get(f"{gateway.url}/v1/models/{missing}", headers=bearer(user["api_key"]))
        assert r.status_code == 404, missing
        assert r.json()["error"]["code"] == "model_not_found"


def test_models_with_the_sdk(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "test/echo" in ids and "test/unpriced" not in ids
    model = client.models.retrieve("test/echo")
    assert model.id == "test/echo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("test/unpriced")


def test_unpriced_model_is_not_served(gateway: GatewayServer, user: dict[str, Any], emu_a: Emulator) -> None:
    r = httpx.post(gateway.url + "/v1/chat/completions", headers=bearer(user["api_key"]),
                   json={"model": "test/unpriced", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
    assert emu_a.requests == []


# ------------------------------------------------------------------------------------------------------ CLI


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAYZ_")}
    env["GATEWAYZ_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'x.db'}"
    env["GATEWAYZ_DATA_DIR"] = str(tmp)
    return subprocess.run([str(CLI), *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=60,
                          check=False)


def test_cli_migrate_users_and_keys(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "migrate")
    assert r.returncode == 0, r.stderr

    r = run_cli(tmp_path, "users", "create", "--email", "cli@example.com", "--credits", "2.5")
    assert r.returncode == 0, r.stderr
    user_id = int(re.search(r"user_id:\s*(\d+)", r.stdout).group(1))  # type: ignore[union-attr]
    user_key = re.search(r"api_key:\s*(\S+)", r.stdout).group(1)      # type: ignore[union-attr]
    assert KEY_RE.match(user_key)

    r = run_cli(tmp_path, "keys", "create", "--user", str(user_id), "--name", "n")
    assert r.returncode == 0, r.stderr
    second_key = re.search(r"api_key:\s*(\S+)", r.stdout).group(1)    # type: ignore[union-attr]
    assert KEY_RE.match(second_key) and second_key != user_key

    assert run_cli(tmp_path, "migrate").returncode == 0  # again: a no-op

    # The database holds exactly what was printed: the credits, their ledger row, both keys (encrypted).
    cipher = KeyCipher((tmp_path / "secret.key").read_text().strip())
    with sqlite3.connect(tmp_path / "x.db") as db:
        balance = db.execute("SELECT balance_nanos FROM users WHERE id = ?", (user_id,)).fetchone()[0]
        assert balance == 2_500_000_000
        ledger = db.execute("SELECT type, amount_nanos FROM credit_transactions WHERE user_id = ?",
                            (user_id,)).fetchall()
        assert ledger == [("admin_credit", 2_500_000_000)]
        rows = db.execute("SELECT name, encrypted_key FROM api_keys WHERE user_id = ? ORDER BY id",
                          (user_id,)).fetchall()
    assert [name for name, _ in rows] == ["default", "n"]
    assert [cipher.decrypt(enc) for _, enc in rows] == [user_key, second_key]

    for bad in (["keys", "create", "--user", "999", "--name", "n"],
                ["users", "create", "--email", "cli@example.com", "--credits", "1"],          # e-mail taken
                ["users", "create", "--email", "cli2@example.com", "--credits", "0.0000000001"]):
        r = run_cli(tmp_path, *bad)
        assert r.returncode != 0, bad
        assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize(("config", "named"), [
    pytest.param("bogus_field: 1\n", "bogus_field", id="unknown-field"),
    pytest.param("credits:\n  authority: sql\n  surprise: true\n", "surprise", id="unknown-nested-field"),
    pytest.param("providers:\n  - name: p\n    base_url: ${GWZ_TEST_UNDEFINED_VAR}\n", "GWZ_TEST_UNDEFINED_VAR",
                 id="undefined-variable"),
    pytest.param("providers:\n  - name: p\n    base_url: http://x\n    api_key: ${GWZ_TEST_MISSING_KEY}\n",
                 "GWZ_TEST_MISSING_KEY", id="undefined-api-key-variable"),
])
def test_cli_rejects_bad_config_without_traceback(tmp_path: Path, config: str, named: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    r = run_cli(tmp_path, "migrate", "--config", str(path))
    assert r.returncode != 0
    output = r.stdout + r.stderr
    assert named in output, output
    assert "Traceback" not in output


def test_readiness_and_system(gateway: GatewayServer, tmp_path: Path) -> None:
    ready = httpx.get(gateway.url + "/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    system = httpx.get(gateway.url + "/health/system", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert system["memory"]["rss_bytes"] > 10_000_000 and "status" in system["database_pool"]
    assert httpx.get(gateway.url + "/health/system").status_code == 401
    # A database behind the newest migration: not ready, but /health still answers 200.
    stale = GatewayServer(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", admin_key=ADMIN_KEY,
                            data_dir=tmp_path)).start()
    try:
        r = httpx.get(stale.url + "/health/ready")
        assert r.status_code == 503 and "migrations pending" in r.json()["reason"]
        assert httpx.get(stale.url + "/health").status_code == 200
    finally:
        stale.stop()
