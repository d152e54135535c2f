"""Error responses end to end: every error on the API is OpenAI's shape, the right status, and leaks nothing.

Shape: {"error": {"message": str, "type": str, "param": ..., "code": ...}} - never a stack trace, a file path
or FastAPI's {"detail": ...}. Checked with the openai SDK (which maps statuses to exception classes) and with
httpx for the raw status, headers and bytes."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer

HI = [{"role": "user", "content": "hi"}]
LEAKS = ("Traceback", 'File "', "/work/", "site-packages", "gatewayz/", '"detail"', "pydantic", "sqlalchemy")
NO_PARAM = object()


def sdk(gw: GatewayServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=api_key, max_retries=0, timeout=20)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_chat(gw: GatewayServer, headers: dict[str, str] | None, *, body: Any = None,
              content: bytes | None = None) -> httpx.Response:
    if content is None:
        content = json.dumps({"model": "test/echo", "messages": HI} if body is None else body).encode()
    return httpx.post(gw.url + "/v1/chat/completions", content=content, timeout=20,
                      headers={"content-type": "application/json", **(headers or {})})


def check_error(r: httpx.Response, status: int, *, code: str | None = None, type_: str | None = None,
                param: Any = NO_PARAM) -> dict[str, Any]:
    """Assert an OpenAI-shaped error with this status; returns the inner error object."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json"), r.headers.get("content-type")
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert err["code"] is None or isinstance(err["code"], str), err
    for leak in LEAKS:
        assert leak not in r.text, f"{leak!r} leaked in {r.text[:500]}"
    assert r.headers.get("x-request-id"), "every response carries X-Request-ID"
    if code is not None:
        assert err["code"] == code, err
    if type_ is not None:
        assert err["type"] == type_, err
    if param is not NO_PARAM:
        assert err["param"] == param, err
    return err  # type: ignore[no-any-return]


def upstream_calls(*emus: Emulator) -> int:
    return sum(len(e.requests) for e in emus)


# ------------------------------------------------------------------------------------------------ models
def test_unknown_model_is_404_model_not_found(gateway: GatewayServer, client: openai.OpenAI, user: dict[str, Any],
                                              emu_a: Emulator, emu_b: Emulator) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such/model", messages=HI)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert "no-such/model" in caught.value.message

    for name in ("gpt-4o", "test/echo ", "TEST/ECHO", "../../etc/passwd", "test/echo\u0000", "模型/🚀", "x" * 5000):
        r = post_chat(gateway, bearer(user["api_key"]), body={"model": name, "messages": HI})
        check_error(r, 404, code="model_not_found", type_="invalid_request_error")

    r = httpx.get(gateway.url + "/v1/models/no-such/model")
    check_error(r, 404, code="model_not_found")
    assert upstream_calls(emu_a, emu_b) == 0


def test_unpriced_model_is_404_and_never_reaches_upstream(gateway: GatewayServer, client: openai.OpenAI,
                                                         user: dict[str, Any], emu_a: Emulator,
                                                         emu_b: Emulator) -> None:
    before = gateway.balance_nanos(user["api_key"])
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="test/unpriced", messages=HI)
    assert caught.value.code == "model_not_found"
    for stream in (False, True):
        r = post_chat(gateway, bearer(user["api_key"]), body={"model": "test/unpriced", "messages": HI,
                                                              "stream": stream})
        check_error(r, 404, code="model_not_found")
    check_error(httpx.get(gateway.url + "/v1/models/test/unpriced"), 404)
    assert "test/unpriced" not in {m["id"] for m in httpx.get(gateway.url + "/v1/models").json()["data"]}
    assert upstream_calls(emu_a, emu_b) == 0
    assert gateway.balance_nanos(user["api_key"]) == before


# ------------------------------------------------------------------------------------------ bad requests
BAD_BODIES: list[tuple[str, bytes, str | None, Any]] = [
    # (case id, raw body, expected code or None, expected param or NO_PARAM)
    ("malformed-json", b'{"model": "test/echo", "messages": [', "invalid_json", NO_PARAM),
    ("trailing-garbage", b'{"model": "test/echo", "messages": []} xyz', "invalid_json", NO_PARAM),
    ("not-utf8", b'{"model": "\xff\xfe"}', "invalid_json", NO_PARAM),
    ("empty-body", b"", None, NO_PARAM),
    ("array-body", b'[{"model": "test/echo"}]', None, NO_PARAM),
    ("string-body", b'"hello"', None, NO_PARAM),
    ("number-body", b"42", None, NO_PARAM),
    ("null-body", b"null", None, NO_PARAM),
]


def _chat(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "test/echo", "messages": HI}
    for k, v in over.items():
        if v is _DROP:
            body.pop(k)
        else:
            body[k] = v
    return body


_DROP = object()

BAD_FIELDS: list[tuple[str, dict[str, Any], str | None]] = [
    # (case id, body, param that should be named)
    ("missing-model", _chat(model=_DROP), "model"),
    ("model-null", _chat(model=None), "model"),
    ("model-number", _chat(model=42), "model"),
    ("model-empty", _chat(model=""), "model"),
    ("model-list", _chat(model=["test/echo"]), "model"),
    ("missing-messages", _chat(messages=_DROP), "messages"),
    ("empty-messages", _chat(messages=[]), "messages"),
    ("messages-string", _chat(messages="hi"), "messages"),
    ("messages-object", _chat(messages={"role": "user", "content": "hi"}), "messages"),
    ("message-without-role", _chat(messages=[{"content": "hi"}]), "messages"),
    ("message-role-number", _chat(messages=[{"role": 1, "content": "hi"}]), "messages"),
    ("message-not-object", _chat(messages=["hi"]), "messages"),
    ("second-message-bad", _chat(messages=[*HI, None]), "messages"),
    ("stream-string", _chat(stream="true"), "stream"),
    ("stream-int", _chat(stream=1), "stream"),
    ("stream-options-string", _chat(stream=True, stream_options="yes"), "stream_options"),
    ("max-tokens-zero", _chat(max_tokens=0), "max_tokens"),
    ("max-tokens-negative", _chat(max_tokens=-5), "max_tokens"),
    ("max-tokens-string", _chat(max_tokens="100"), "max_tokens"),
    ("max-tokens-bool", _chat(max_tokens=True), "max_tokens"),
    ("max-tokens-float", _chat(max_tokens=10.5), "max_tokens"),
    ("max-tokens-huge", _chat(max_tokens=10**30), "max_tokens"),
    ("max-completion-tokens-zero", _chat(max_completion_tokens=0), "max_completion_tokens"),
    ("n-zero", _chat(n=0), "n"),
    ("n-thousand", _chat(n=1000), "n"),
    ("n-string", _chat(n="2"), "n"),
    ("n-negative", _chat(n=-1), "n"),
]


def test_unparseable_bodies_are_400(gateway: GatewayServer, user: dict[str, Any], emu_a: Emulator,
                                    emu_b: Emulator) -> None:
    failures = []
    for case, raw, code, param in BAD_BODIES:
        r = post_chat(gateway, bearer(user["api_key"]), content=raw)
        try:
            check_error(r, 400, code=code, type_="invalid_request_error", param=param)
        except AssertionError as exc:
            failures.append(f"{case}: {exc}")
    assert not failures, "\n".join(failures)
    assert upstream_calls(emu_a, emu_b) == 0


def test_invalid_fields_are_400_naming_the_param(gateway: GatewayServer, user: dict[str, Any], emu_a: Emulator,
                                                 emu_b: Emulator) -> None:
    failures = []
    for case, body, param in BAD_FIELDS:
        r = post_chat(gateway, bearer(user["api_key"]), body=body)
        try:
            err = check_error(r, 400, type_="invalid_request_error")
            assert isinstance(err["param"], str) and err["param"].startswith(param or ""), err
        except AssertionError as exc:
            failures.append(f"{case}: {exc}")
    assert not failures, "\n".join(failures)
    assert upstream_calls(emu_a, emu_b) == 0


def test_bad_requests_with_the_sdk(client: openai.OpenAI, emu_a: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/echo", messages=[])
    assert caught.value.param == "messages" and caught.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/echo", messages=HI, max_tokens=0)
    assert caught.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="test/echo", messages=HI, n=1000)
    assert caught.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="test/echo", messages=HI, stream=True, max_tokens=-1)
    assert emu_a.requests == []


# ---------------------------------------------------------------------------------------- authentication
def test_authentication_failures_are_401(gateway: GatewayServer, emu_a: Emulator, emu_b: Emulator) -> None:
    fake_key = "gw_live_" + "A" * 43
    basic = "Basic " + base64.b64encode(b"user:password").decode()
    cases: dict[str, dict[str, str]] = {
        "no-header": {},
        "bearer-garbage": {"Authorization": "Bearer garbage"},
        "bearer-without-token": {"Authorization": "Bearer"},
        "unknown-well-formed-key": {"Authorization": f"Bearer {fake_key}"},
        "unknown-key-x-api-key": {"x-api-key": fake_key},
        "basic": {"Authorization": basic},
        "no-scheme": {"Authorization": fake_key},
        "very-long": {"Authorization": "Bearer gw_live_" + "z" * 5000},
    }
    failures = []
    for case, headers in cases.items():
        r = post_chat(gateway, headers)
        try:
            check_error(r, 401, type_="authentication_error")
        except AssertionError as exc:
            failures.append(f"{case}: {exc}")
    assert not failures, "\n".join(failures)

    for key in ("garbage", fake_key):
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk(gateway, key).chat.completions.create(model="test/echo", messages=HI)
        assert caught.value.type == "authentication_error"
    assert upstream_calls(emu_a, emu_b) == 0


def test_admin_key_cannot_do_inference(gateway: GatewayServer, emu_a: Emulator, emu_b: Emulator) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(gateway, ADMIN_KEY).chat.completions.create(model="test/echo", messages=HI)
    assert caught.value.type == "permission_error"
    check_error(post_chat(gateway, bearer(ADMIN_KEY)), 403, type_="permission_error")
    check_error(post_chat(gateway, {"x-api-key": ADMIN_KEY}), 403)
    assert upstream_calls(emu_a, emu_b) == 0


# ---------------------------------------------------------------------------------------------- credits
def test_zero_balance_is_402_without_upstream_call(gateway: GatewayServer, emu_a: Emulator,
                                                   emu_b: Emulator) -> None:
    broke = gateway.create_user("0")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, broke["api_key"]).chat.completions.create(model="test/echo", messages=HI)
    assert type(caught.value) is openai.APIStatusError and caught.value.status_code == 402
    assert caught.value.type == "insufficient_quota"

    for stream in (False, True):
        r = post_chat(gateway, bearer(broke["api_key"]), body={"model": "test/echo", "messages": HI,
                                                               "stream": stream})
        err = check_error(r, 402, type_="insufficient_quota")
        assert "balance" in err["message"].lower()
    assert upstream_calls(emu_a, emu_b) == 0
    assert gateway.balance_nanos(broke["api_key"]) == 0


def test_request_that_could_cost_more_than_the_balance_is_402(gateway: GatewayServer, user: dict[str, Any],
                                                              emu_a: Emulator) -> None:
    # $1000/M tokens, up to 1024 output tokens per choice x 128 choices: far more than the user's $10.
    r = post_chat(gateway, bearer(user["api_key"]), body={"model": "test/pricey", "messages": HI, "n": 128})
    check_error(r, 402, type_="insufficient_quota")
    assert emu_a.requests == []


def test_reused_request_id_is_409(gateway: GatewayServer, client: openai.OpenAI, user: dict[str, Any],
                                  emu_a: Emulator) -> None:
    rid = "dup-request-id-0001"
    first = post_chat(gateway, {**bearer(user["api_key"]), "X-Request-ID": rid})
    assert first.status_code == 200 and first.headers["x-request-id"] == rid
    gateway.drain()
    with pytest.raises(openai.ConflictError) as caught:
        client.chat.completions.create(model="test/echo", messages=HI, extra_headers={"X-Request-ID": rid})
    assert caught.value.code == "duplicate_request_id"
    check_error(post_chat(gateway, {**bearer(user["api_key"]), "X-Request-ID": rid}), 409,
                code="duplicate_request_id")
    assert len(emu_a.requests) == 1


# ------------------------------------------------------------------------------------------ body limits
def test_body_over_the_limit_is_413(gateway_factory: GatewayFactory, emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], max_body_bytes=2048)
    key = gw.create_user("10")["api_key"]
    small = post_chat(gw, bearer(key), body={"model": "test/echo", "messages": [{"role": "user", "content": "x"}]})
    assert small.status_code == 200
    big = {"model": "test/echo", "messages": [{"role": "user", "content": "word " * 2048}]}  # about 10 KB
    r = post_chat(gw, bearer(key), body=big)
    check_error(r, 413, type_="invalid_request_error")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gw, key).chat.completions.create(model="test/echo", messages=big["messages"])
    assert caught.value.status_code == 413
    assert len(emu_a.requests) == 1


# ------------------------------------------------------------------------------------------- request id
BAD_REQUEST_IDS = ["a" * 200, "x" * 129, "has space", 'quo"ted', "semi;colon", "<script>", "a/b", "é"]


def test_invalid_request_id_is_400(gateway: GatewayServer, user: dict[str, Any], emu_a: Emulator) -> None:
    failures = []
    for bad_id in BAD_REQUEST_IDS:
        raw_id = bad_id.encode("latin-1")
        try:
            r = post_chat(gateway, {**bearer(user["api_key"]), "X-Request-ID": raw_id})  # type: ignore[dict-item]
            check_error(r, 400, code="invalid_request_id", type_="invalid_request_error")
            assert r.headers["x-request-id"].encode("latin-1") != raw_id, "the bad id is not echoed"
            r = httpx.get(gateway.url + "/user/balance", headers={**bearer(user["api_key"]), "X-Request-ID": raw_id})
            check_error(r, 400, code="invalid_request_id")
        except AssertionError as exc:
            failures.append(f"{bad_id[:20]!r}: {exc}")
    assert not failures, "\n".join(failures)
    assert emu_a.requests == []


def test_valid_request_id_is_echoed(gateway: GatewayServer, user: dict[str, Any]) -> None:
    for rid in ("abc", "A-b_c.d:e-123", "9" * 128):
        ok = post_chat(gateway, {**bearer(user["api_key"]), "X-Request-ID": rid})
        assert ok.status_code == 200 and ok.headers["x-request-id"] == rid
    err = post_chat(gateway, {**bearer(user["api_key"]), "X-Request-ID": "err-id-1"}, body={"model": "nope",
                                                                                             "messages": HI})
    check_error(err, 404)
    assert err.headers["x-request-id"] == "err-id-1"
    mgmt = httpx.get(gateway.url + "/user/balance", headers={**bearer(user["api_key"]), "X-Request-ID": "mgmt-id"})
    assert mgmt.status_code == 200 and mgmt.headers["x-request-id"] == "mgmt-id"


# ---------------------------------------------------------------------------------- routes and methods
def test_unknown_route_is_404_openai_body(gateway: GatewayServer, user: dict[str, Any]) -> None:
    for method, path in [("GET", "/v1/nope"), ("POST", "/v1/edits"), ("GET", "/nope"),
                         ("POST", "/v1/chat/completions/extra"), ("GET", "/v2/chat/completions")]:
        r = httpx.request(method, gateway.url + path, headers=bearer(user["api_key"]), json={})
        check_error(r, 404, type_="invalid_request_error")


def test_wrong_method_is_405_openai_body(gateway: GatewayServer, user: dict[str, Any]) -> None:
    failures = []
    for method, path in [("GET", "/v1/chat/completions"), ("DELETE", "/v1/chat/completions"),
                         ("PUT", "/chat/completions"), ("POST", "/v1/models"), ("DELETE", "/admin/users")]:
        r = httpx.request(method, gateway.url + path, headers=bearer(user["api_key"]))
        try:
            check_error(r, 405, type_="invalid_request_error")
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    assert not failures, "\n".join(failures)


def test_405_says_which_methods_are_allowed(gateway: GatewayServer, user: dict[str, Any]) -> None:
    """RFC 9110 15.5.6: a 405 response MUST carry an Allow header."""
    failures = []
    for method, path, allowed in [("GET", "/v1/chat/completions", "POST"), ("POST", "/v1/models", "GET"),
                                  ("DELETE", "/admin/users", "POST")]:
        r = httpx.request(method, gateway.url + path, headers=bearer(user["api_key"]))
        if r.status_code != 405 or allowed not in r.headers.get("allow", ""):
            failures.append(f"{method} {path}: {r.status_code}, Allow: {r.headers.get('allow')!r}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------- management routes
def test_admin_routes_need_the_admin_key(gateway: GatewayServer, user: dict[str, Any]) -> None:
    body = {"email": "newcomer@example.com", "credits": "1"}
    check_error(httpx.post(gateway.url + "/admin/users", json=body, headers=bearer(user["api_key"])), 403,
                type_="permission_error")
    check_error(httpx.post(gateway.url + "/admin/users", json=body), 401, type_="authentication_error")
    check_error(httpx.post(gateway.url + "/admin/users", json=body, headers=bearer("gw_live_" + "B" * 43)), 401)
    check_error(httpx.get(gateway.url + "/admin/users", headers=bearer(user["api_key"])), 403)
    check_error(httpx.post(gateway.url + "/credits/add", json={"user_id": user["id"], "amount": "5"},
                           headers=bearer(user["api_key"])), 403)
    check_error(httpx.get(gateway.url + "/user/balance"), 401)
    check_error(httpx.get(gateway.url + "/user/balance", headers=bearer(ADMIN_KEY)), 403)
    # none of the refused calls created the user
    with gateway.admin() as admin:
        emails = [u["email"] for u in admin.get("/admin/users").json()["data"]]
    assert "newcomer@example.com" not in emails


BAD_NEW_USERS: list[tuple[str, dict[str, Any], str]] = [
    # (case id, body, param that should be named)
    ("invalid-email", {"email": "not-an-email", "credits": "1"}, "email"),
    ("email-with-quote", {"email": "a'b@example.com"}, "email"),
    ("missing-email", {"credits": "1"}, "email"),
    ("unknown-field", {"email": "x1@example.com", "is_superuser": True}, "is_superuser"),
    ("negative-credits", {"email": "x2@example.com", "credits": "-1"}, "credits"),
    ("unknown-role", {"email": "x3@example.com", "role": "root"}, "role"),
    ("credits-not-a-number", {"email": "x4@example.com", "credits": "lots"}, "credits"),
]


def test_create_user_validation_is_400_openai_body(gateway: GatewayServer) -> None:
    failures = []
    with gateway.admin() as admin:
        for case, body, param in BAD_NEW_USERS:
            r = admin.post("/admin/users", json=body)
            try:
                err = check_error(r, 400, type_="invalid_request_error")
                assert err["param"] == param, err
            except AssertionError as exc:
                failures.append(f"{case}: {exc}")
        assert not failures, "\n".join(failures)
        assert admin.get("/admin/users").json()["total"] == 0  # nothing was created


def test_management_malformed_json_is_400(gateway: GatewayServer) -> None:
    with gateway.admin() as admin:
        r = admin.post("/admin/users", content=b'{"email": ', headers={"content-type": "application/json"})
        check_error(r, 400)
        r = admin.post("/credits/add", content=b"[1, 2", headers={"content-type": "application/json"})
        check_error(r, 400)


def test_duplicate_user_is_409(gateway: GatewayServer) -> None:
    gateway.create_user("1", email="twice@example.com")
    with gateway.admin() as admin:
        r = admin.post("/admin/users", json={"email": "twice@example.com"})
    check_error(r, 409, code="email_taken")


def test_credits_add_validation(gateway: GatewayServer, user: dict[str, Any]) -> None:
    before = gateway.balance_nanos(user["api_key"])
    with gateway.admin() as admin:
        for amount in ("-5", "0", -1, "abc", "1e400", "99999999999"):
            r = admin.post("/credits/add", json={"user_id": user["id"], "amount": amount})
            err = check_error(r, 400, type_="invalid_request_error")
            assert err["param"] == "amount", err
        check_error(admin.post("/credits/add", json={"user_id": user["id"], "amount": "1", "bonus": 1}), 400)
        check_error(admin.post("/credits/add", json={"user_id": 0, "amount": "1"}), 400)
        check_error(admin.post("/credits/add", json={"user_id": 987654, "amount": "1"}), 404, code="user_not_found")
    assert gateway.balance_nanos(user["api_key"]) == before


# --------------------------------------------------------------------------------------------- request ids
def test_every_response_carries_a_request_id(gateway: GatewayServer, user: dict[str, Any]) -> None:
    key = user["api_key"]
    url = gateway.url
    responses = [
        post_chat(gateway, bearer(key)),                                               # 200 inference
        post_chat(gateway, bearer(key), body={"model": "nope", "messages": HI}),       # 404 inference
        post_chat(gateway, bearer(key), content=b"{"),                                 # 400 inference
        post_chat(gateway, {}),                                                        # 401 inference
        post_chat(gateway, bearer(ADMIN_KEY)),                                         # 403 inference
        httpx.post(url + "/v1/chat/completions", headers=bearer(key),                  # streamed
                   json={"model": "test/echo", "messages": HI, "stream": True}),
        httpx.get(url + "/v1/models"),
        httpx.get(url + "/v1/models/nope"),
        httpx.get(url + "/health"),
        httpx.get(url + "/health/quick"),
        httpx.get(url + "/v1/nope"),
        httpx.get(url + "/v1/chat/completions"),
        httpx.get(url + "/user/balance", headers=bearer(key)),
        httpx.get(url + "/user/balance"),
        httpx.post(url + "/admin/users", json={"email": "z@example.com"}, headers=bearer(key)),
        httpx.post(url + "/admin/users", json={"email": "bad"}, headers=bearer(ADMIN_KEY)),
        httpx.post(url + "/admin/users", json={"email": "rid@example.com"}, headers=bearer(ADMIN_KEY)),
        httpx.post(url + "/credits/add", json={"user_id": user["id"], "amount": "-1"}, headers=bearer(ADMIN_KEY)),
    ]
    statuses = [r.status_code for r in responses]
    assert statuses[:11] + statuses[12:] == [200, 404, 400, 401, 403, 200, 200, 404, 200, 200, 404,
                                             200, 401, 403, 400, 201, 400]
    assert statuses[11] >= 400  # wrong method (405, see test_wrong_method_is_405_openai_body)
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids), "request ids are unique"


# ------------------------------------------------------------------------------------------------- fuzz
def _fuzz_requests(rng: random.Random) -> list[tuple[str, bytes, dict[str, str]]]:
    """(label, raw body, extra headers): 30 hostile requests, the same ones every run."""
    nasty = ["'; DROP TABLE users; --", "<script>alert(1)</script>", "\u202e\u0000\ufeff", "🙂" * 50,
             "test/echo' OR '1'='1", "${jndi:ldap://x}", "{{7*7}}", "%00%0d%0a", "\\u0000", "test/echo\n"]
    out: list[tuple[str, bytes, dict[str, str]]] = []
    for i in range(3):
        out.append((f"random-bytes-{i}", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))), {}))
    for i in range(2):
        junk = "".join(rng.choice('{}[]":,.-+eE0123456789 truefalsnmodelssage\\') for _ in range(rng.randint(1, 300)))
        out.append((f"random-json-ish-{i}", junk.encode(), {}))
    for i, text in enumerate(nasty):
        out.append((f"nasty-model-{i}", json.dumps({"model": text, "messages": HI}).encode(), {}))
    for i, text in enumerate(nasty[:5]):
        body = {"model": "test/echo", "messages": [{"role": "user", "content": text}, {"role": text}]}
        out.append((f"nasty-message-{i}", json.dumps(body).encode(), {}))
    nested: Any = {"a": None}
    for _ in range(200):
        nested = {"a": nested, "b": [nested, 1, None, True]} if rng.random() < 0.01 else {"k": nested}
    out += [
        ("huge-max-tokens", b'{"model":"test/echo","messages":[{"role":"user","content":"x"}],"max_tokens":'
         + b"9" * 400 + b"}", {}),
        ("huge-n", json.dumps(_chat(n=2**63)).encode(), {}),
        ("huge-exponent", b'{"model":"test/echo","messages":[{"role":"user","content":"x"}],"temperature":1e999}',
         {}),
        ("nan", b'{"model":"test/echo","messages":[{"role":"user","content":"x"}],"top_p":NaN}', {}),
        ("deeply-nested-array", b'{"model":"test/echo","messages":' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}", {}),
        ("nested-garbage-content", json.dumps(_chat(messages=[{"role": "user", "content": nested}])).encode(), {}),
        ("lone-surrogate", b'{"model":"test/echo\\ud800","messages":[{"role":"user","content":"x"}]}', {}),
        ("garbage-types-everywhere", json.dumps({"model": {"$ne": None}, "messages": [[], {}, 1],
                                                 "stream": {"a": 1}, "n": [1]}).encode(), {}),
        ("sql-in-request-id", json.dumps(_chat()).encode(), {"X-Request-ID": "1' OR '1'='1"}),
        ("binary-auth", json.dumps(_chat()).encode(), {"Authorization": "Bearer gw_\u00ff\u00fe\u00e9"}),
    ]
    assert len(out) == 30
    return out


def test_fuzz_burst_never_yields_a_5xx(gateway: GatewayServer, user: dict[str, Any]) -> None:
    rng = random.Random(20240611)
    failures = []
    with httpx.Client(base_url=gateway.url, timeout=20) as http:
        for label, raw, extra in _fuzz_requests(rng):
            headers = {"content-type": "application/json", **bearer(user["api_key"]), **extra}
            r = http.post("/v1/chat/completions", content=raw,
                          headers={k: v.encode("latin-1") for k, v in headers.items()})
            try:
                assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
                if r.status_code >= 400:
                    check_error(r, r.status_code)
            except AssertionError as exc:
                failures.append(f"{label}: {exc}")
    assert not failures, "\n".join(failures)
    # and the gateway is still fine afterwards
    assert post_chat(gateway, bearer(user["api_key"])).status_code == 200
    assert httpx.get(gateway.url + "/health").json()["status"] == "ok"
