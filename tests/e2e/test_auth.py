"""Self-service accounts over real HTTP: register, log in, use the session on the account routes (never for
inference), log out; refusals (disposable domains, weak passwords, duplicates, wrong passwords); the per-address
limits on logins and registrations and the per-user limit on key creation; passwords set, changed, rehashed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from gatewayz.settings import Argon2Config, AuthConfig
from tests.conftest import GatewayFactory
from tests.databases import DatabaseFactory, require_redis
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FAST = Argon2Config(time_cost=1, memory_cost_kib=1024, parallelism=1)  # cheap hashing where cost is not the point
PASSWORD = "correct horse 42"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def email() -> str:
    return f"u{uuid.uuid4().hex[:10]}@example.com"


def register(gw: GatewayServer, address: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(gw.url + "/auth/register", json={"email": address, "password": password}, timeout=30)


def login(gw: GatewayServer, address: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(gw.url + "/auth/login", json={"email": address, "password": password}, timeout=30)


def stored_hash(gw: GatewayServer, user_id: int) -> str | None:
    creds = gw.run(gw.container.auth.accounts.by_id(user_id))
    return None if creds is None else creds.password_hash


def assert_429(r: httpx.Response, limit: int, reason: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["type"] == "rate_limit_error" and r.json()["error"]["reason"] == reason
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-limit"] == str(limit) and r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["x-ratelimit-reset"]) >= 1 and r.headers["x-ratelimit-reason"] == reason


def test_register_login_use_the_session_and_log_out(gateway: GatewayServer) -> None:
    address = email().replace("@example.com", "@Example.COM")
    r = register(gateway, address)
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == address.lower() and user["role"] == "user" and "password" not in str(user)
    h = stored_hash(gateway, user["id"])
    assert h is not None and h.startswith("$argon2id$") and PASSWORD not in h

    r = login(gateway, address.upper())  # e-mail addresses are matched without regard to case
    assert r.status_code == 200, r.text
    session = r.json()
    token = session["session_token"]
    assert token.startswith("gws_") and len(token) == 4 + 43 and session["user"]["id"] == user["id"]
    expires = datetime.fromisoformat(session["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)

    balance = httpx.get(gateway.url + "/user/balance", headers=bearer(token))
    assert balance.status_code == 200 and balance.json()["balance_nanos"] == 0
    made = httpx.post(gateway.url + "/user/api-keys", headers=bearer(token), json={"name": "from-session"})
    assert made.status_code == 201 and made.json()["api_key"].startswith("gw_live_")
    httpx.post(gateway.url + "/credits/add", headers=ADMIN, json={"user_id": user["id"], "amount": "1"})

    # The API key runs inference; the session token is refused with a 401 that says why.
    messages: Any = [{"role": "user", "content": "hi"}]
    ok = openai.OpenAI(base_url=gateway.url + "/v1", api_key=made.json()["api_key"], max_retries=0)
    assert ok.chat.completions.create(model="test/echo", messages=messages).choices[0].message.content
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=gateway.url + "/v1", api_key=token, max_retries=0).chat.completions.create(
            model="test/echo", messages=messages)
    assert refused.value.status_code == 401 and refused.value.code == "session_token_not_for_inference"

    assert httpx.post(gateway.url + "/auth/logout", headers=bearer(token)).json() == {"logged_out": True}
    after = httpx.get(gateway.url + "/user/balance", headers=bearer(token))
    assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_session"
    assert httpx.post(gateway.url + "/auth/logout", headers=bearer(token)).status_code == 401
    api_key_logout = httpx.post(gateway.url + "/auth/logout", headers=bearer(made.json()["api_key"]))
    assert api_key_logout.status_code == 401 and api_key_logout.json()["error"]["code"] == "missing_session"

    log = httpx.get(gateway.url + "/admin/audit?limit=100", headers=ADMIN).json()["data"]
    mine = [e["action"] for e in log if e["actor"] == f"user:{user['id']}"]
    for action in ("user.register", "user.login", "user.logout", "key.create"):
        assert action in mine, action
    assert all(token not in str(e) and PASSWORD not in str(e) for e in log)


def test_wrong_password_unknown_email_and_no_password_fail_alike(gateway_factory: GatewayFactory,
                                                                 emu_a: Emulator) -> None:
    gateway = gateway_factory([emu_a], auth=AuthConfig(argon2=FAST))
    address = email()
    assert register(gateway, address).status_code == 201
    made_by_admin = gateway.create_user("1")  # no password until its owner sets one
    answers = [login(gateway, address, "wrong password 1"), login(gateway, email()),
               login(gateway, made_by_admin["email"]),
               login(gateway, "not an address")]
    for r in answers:
        assert r.status_code == 401 and r.json()["error"] == {
            "message": "Invalid e-mail or password.", "type": "authentication_error", "param": None,
            "code": "invalid_credentials"}, r.text


def test_registration_refusals(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], auth=AuthConfig(registrations=100, argon2=FAST,
                                                  disposable_domains=["Throwaway.Example"]))
    for address in ("someone@tempmail.com", "a@mailinator.com", "b@eu.mailinator.com", "c@YOPMAIL.com",
                    "d@10minutemail.com", "e@guerrillamail.com", "f@throwaway.example"):
        r = register(gw, address)
        assert r.status_code == 400 and r.json()["error"]["code"] == "disposable_email", (address, r.text)
        assert r.json()["error"]["param"] == "email"
    for address in ("no-at-sign", "two@@example.com", "a@localhost", "x@example..com"):
        r = register(gw, address)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_email", (address, r.text)
    address = email()
    for weak in ("Short1!", "alllowercaseletters", "1234567890123", "aaaaaAAAAA11", address.split("@")[0] + "X1!"):
        r = register(gw, address, weak)
        assert r.status_code == 400 and r.json()["error"]["code"] == "weak_password", (weak, r.text)
    assert register(gw, address).status_code == 201
    taken = register(gw, address.upper(), "another password 7")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "email_taken"
    too_long = register(gw, email(), "x1" * 600)
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "password"

    closed = gateway_factory([emu_a], auth=AuthConfig(registration_open=False, argon2=FAST))
    r = register(closed, email())
    assert r.status_code == 403 and r.json()["error"]["code"] == "registration_closed"


def test_login_limit_per_address(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], auth=AuthConfig(argon2=FAST))
    address = email()
    assert register(gw, address).status_code == 201
    assert login(gw, address).status_code == 200
    for _ in range(9):  # ten attempts in all, whatever their outcome
        assert login(gw, address, "wrong password 1").status_code == 401
    eleventh = login(gw, address)  # even the right password waits now
    assert_429(eleventh, 10, "login")
    assert 1 <= int(eleventh.headers["retry-after"]) <= 90  # one attempt refills in 15 min / 10


def test_registration_limit_per_address(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], auth=AuthConfig(argon2=FAST))
    assert register(gw, email(), "weak").status_code == 400  # refusals that reveal nothing are not counted
    assert register(gw, "x@tempmail.com").status_code == 400
    first = email()
    assert register(gw, first).status_code == 201
    assert register(gw, first).status_code == 409  # a duplicate counts: it tells whether an address exists
    assert register(gw, email()).status_code == 201
    assert_429(register(gw, email()), 3, "registration")


def test_login_limit_is_one_limit_across_instances(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                   databases: DatabaseFactory) -> None:
    redis_url = require_redis()
    url = databases.url("sqlite")
    migrate(url)
    a = gateway_factory([emu_a], db_url=url, redis_url=redis_url, auth=AuthConfig(argon2=FAST))
    b = gateway_factory([emu_a], db_url=url, redis_url=redis_url, auth=AuthConfig(argon2=FAST))
    keys = ("auth:login:127.0.0.1", "auth:register:127.0.0.1")  # Redis outlives the test: start and end clean
    for key in keys:
        a.run(a.container.limits.limiter.reset(key))
    try:
        address = email()
        assert register(a, address).status_code == 201
        for i in range(10):
            assert login(a if i % 2 else b, address).status_code == 200
        assert_429(login(a, address), 10, "login")
        assert_429(login(b, address), 10, "login")
    finally:
        for key in keys:
            a.run(a.container.limits.limiter.reset(key))


def test_key_creation_limit(gateway: GatewayServer, user: dict[str, Any]) -> None:
    """AC-CC.5.2: ten keys an hour per user; the eleventh is a 429 with the rate-limit headers."""
    for i in range(10):
        r = httpx.post(gateway.url + "/user/api-keys", headers=bearer(user["api_key"]), json={"name": f"k{i}"})
        assert r.status_code == 201, r.text
    eleventh = httpx.post(gateway.url + "/user/api-keys", headers=bearer(user["api_key"]), json={"name": "k10"})
    assert_429(eleventh, 10, "key_creation")
    assert 300 <= int(eleventh.headers["retry-after"]) <= 360  # one key refills every six minutes
    listed = httpx.get(gateway.url + "/user/api-keys", headers=bearer(user["api_key"])).json()["data"]
    assert len(listed) == 11  # the default key and ten more; the refused one was not made


def test_set_then_change_password(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gateway = gateway_factory([emu_a], auth=AuthConfig(argon2=FAST))
    made = gateway.create_user("1")
    key = bearer(made["api_key"])
    address = made["email"]
    assert login(gateway, address).status_code == 401  # made by an admin: no password yet
    weak = httpx.post(gateway.url + "/user/password", headers=key, json={"password": "weak"})
    assert weak.status_code == 400 and weak.json()["error"]["code"] == "weak_password"
    first = httpx.post(gateway.url + "/user/password", headers=key, json={"password": PASSWORD})
    assert first.status_code == 200 and first.json() == {"password_set": True, "replaced": False}

    one = login(gateway, address).json()["session_token"]
    two = login(gateway, address).json()["session_token"]
    new = "a brand new secret 9"
    no_current = httpx.post(gateway.url + "/user/password", headers=bearer(one), json={"password": new})
    assert no_current.status_code == 403 and no_current.json()["error"]["code"] == "current_password"
    wrong = httpx.post(gateway.url + "/user/password", headers=bearer(one),
                       json={"password": new, "current_password": "not it at all"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    changed = httpx.post(gateway.url + "/user/password", headers=bearer(one),
                         json={"password": new, "current_password": PASSWORD})
    assert changed.status_code == 200 and changed.json()["replaced"] is True
    # The session that changed it stays; every other one ends. The API key is a different credential: it stays.
    assert httpx.get(gateway.url + "/user/balance", headers=bearer(one)).status_code == 200
    assert httpx.get(gateway.url + "/user/balance", headers=bearer(two)).status_code == 401
    assert httpx.get(gateway.url + "/user/balance", headers=key).status_code == 200
    assert login(gateway, address).status_code == 401
    assert login(gateway, address, new).status_code == 200
    actions = [e["action"] for e in httpx.get(gateway.url + "/admin/audit?limit=100", headers=ADMIN).json()["data"]
               if e["target"] == f"user:{made['id']}"]
    assert "user.password_set" in actions and "user.password_changed" in actions


def test_password_is_rehashed_when_the_cost_changes(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                    databases: DatabaseFactory) -> None:
    url = databases.url("sqlite")
    migrate(url)
    before = gateway_factory([emu_a], db_url=url, auth=AuthConfig(argon2=FAST))
    address = email()
    user_id = register(before, address).json()["id"]
    old = stored_hash(before, user_id)
    assert old is not None and "m=1024,t=1,p=1" in old
    before.stop()
    after = gateway_factory([emu_a], db_url=url, auth=AuthConfig(argon2=Argon2Config(
        time_cost=2, memory_cost_kib=2048, parallelism=1)))
    assert stored_hash(after, user_id) == old  # nothing changes until the owner logs in
    assert login(after, address).status_code == 200
    new = stored_hash(after, user_id)
    assert new is not None and "m=2048,t=2,p=1" in new
    assert login(after, address).status_code == 200 and stored_hash(after, user_id) == new
