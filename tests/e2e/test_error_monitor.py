"""The error monitor end to end: failed inference requests (client 4xx apart from upstream / gateway 5xx) and
unhandled exceptions are recorded, listed newest first, counted exactly, grouped into recurring patterns that
an admin resolves and a new occurrence reopens; two gateways on one PostgreSQL database count into the same
patterns, and a gateway's buffered errors are written when it stops, so a restart keeps them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory
from tests.databases import DatabaseFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, GatewayServer, migrate

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BOTH_FAIL = "[[fault:status=503]] please"
NO_BREAKERS = {"breaker": {"failure_threshold": 1000}}


def get(gw: GatewayServer, path: str, **params: Any) -> Any:
    r = httpx.get(gw.url + path, headers=ADMIN, params=params, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def chat(gw: GatewayServer, key: str, text: str = "hello", model: str = "test/echo", **kw: Any) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                      json={"model": model, "messages": [{"role": "user", "content": text}], **kw})


def wait_for(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def pattern_counts(gw: GatewayServer) -> dict[tuple[str | None, str | None], int]:
    return {(p["code"], p["model"]): p["count"] for p in get(gw, "/error-monitor/patterns", limit=100)["data"]}


def test_failed_requests_are_recorded_classified_and_counted(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                             emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], routing=NO_BREAKERS)
    key = gw.create_user("10")["api_key"]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)

    assert client.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "hi"}])  # no error
    for _ in range(2):
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nope/model", messages=[{"role": "user", "content": "hi"}])
    assert chat(gw, "sk-not-a-key").status_code == 401
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as failed:
            client.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": BOTH_FAIL}])
        assert failed.value.status_code == 502
    passthrough = chat(gw, key, '[[fault@a:status=400,error_message="context too long: 9001 tokens"]]')
    assert passthrough.status_code == 400
    stream = chat(gw, key, "[[fault:drop_after_chunks=2]] tell me a story", stream=True)
    assert stream.status_code == 200 and "stream ended before completion" in stream.text

    recent = get(gw, "/error-monitor/recent", limit=50)
    assert recent["total"] == 8
    rows = recent["data"]
    assert [(r["class"], r["status"], r["code"]) for r in rows] == [
        ("upstream", 502, "upstream_stream_interrupted"),
        ("client", 400, "upstream_client_error"),
        *[("upstream", 502, "upstream_error")] * 3,
        ("client", 401, "invalid_api_key"),
        *[("client", 404, "model_not_found")] * 2,
    ]
    assert [r["at"] for r in rows] == sorted((r["at"] for r in rows), reverse=True)
    assert rows[1]["provider"] == "emu-a" and rows[1]["message"] == "context too long: 9001 tokens"
    assert rows[2]["provider"] == "emu-b" and "emu-a: HTTP 503; emu-b: HTTP 503" in rows[2]["message"]
    assert rows[2]["model"] == "test/echo" and rows[2]["critical"] and not rows[1]["critical"]
    assert rows[6]["model"] == "nope/model" and rows[5]["model"] is None
    assert get(gw, "/error-monitor/errors/recent", limit=3)["data"] == rows[:3]   # the spec's path
    assert get(gw, "/error-monitor/recent", provider="emu-a")["total"] == 2   # the 400 and the broken stream
    assert get(gw, "/error-monitor/recent", **{"class": "client"})["total"] == 4
    ring = get(gw, "/error-monitor/recent", source="worker", limit=2)
    assert ring["total"] == 8 and [r["code"] for r in ring["data"]] == [r["code"] for r in rows[:2]]

    critical = get(gw, "/error-monitor/critical")
    assert critical["total"] == 4 and {r["code"] for r in critical["data"]} == {"upstream_error",
                                                                                "upstream_stream_interrupted"}
    stats = get(gw, "/error-monitor/stats", hours=1)
    assert (stats["total"], stats["critical"], stats["patterns"]) == (8, 4, 5)
    assert stats["by_class"] == {"client": 4, "upstream": 4, "gateway": 0, "exception": 0}
    assert stats["by_status"] == {"502": 4, "404": 2, "400": 1, "401": 1}
    assert {p["provider"]: (p["errors"], p["critical"]) for p in stats["by_provider"]} == {
        "emu-b": (3, 3), None: (3, 0), "emu-a": (2, 1)}
    assert {m["model"]: m["errors"] for m in stats["by_model"]} == {"test/echo": 5, "nope/model": 2, None: 1}

    patterns = get(gw, "/error-monitor/patterns", min_count=2)
    assert patterns["total"] == 2
    assert [(p["code"], p["count"], p["status"]) for p in patterns["data"]] == [
        ("upstream_error", 3, "open"), ("model_not_found", 2, "open")]
    assert get(gw, "/error-monitor/errors/patterns")["total"] == 5
    status = get(gw, "/error-monitor/autonomous/status")
    assert status["running"] and status["buffered"] == 0 and status["written"] == 8
    dashboard = get(gw, "/error-monitor/dashboard")
    assert dashboard["stats"]["total"] == 8 and dashboard["open_patterns"]["total"] == 5
    assert len(dashboard["latest_critical"]) == 4


def test_pattern_resolve_once_and_reopen_on_a_new_occurrence(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                             emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], routing=NO_BREAKERS)
    key = gw.create_user("10")["api_key"]
    for _ in range(2):
        assert chat(gw, key, BOTH_FAIL).status_code == 502
    [pattern] = get(gw, "/error-monitor/patterns")["data"]
    pid = pattern["id"]

    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=20) as admin:
        assert admin.post(f"/error-monitor/patterns/{pid}/resolve", json={}).status_code == 400
        r = admin.post(f"/error-monitor/patterns/{pid}/resolve", json={"note": "emulator fixed"})
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["resolution_note"], r.json()["resolved_by"]) == (
            "resolved", "emulator fixed", "admin")
        again = admin.post(f"/error-monitor/patterns/{pid}/resolve", json={"note": "twice"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_resolved"
        assert admin.post("/error-monitor/patterns/999999/resolve", json={"note": "x"}).status_code == 404
        assert get(gw, "/error-monitor/patterns", status="open")["total"] == 0

        assert chat(gw, key, BOTH_FAIL).status_code == 502    # it happens again: the pattern reopens
        reopened = get(gw, f"/error-monitor/patterns/{pid}")
        assert (reopened["status"], reopened["count"], reopened["reopened"]) == ("open", 3, 1)
        assert admin.post(f"/error-monitor/patterns/{pid}/resolve", json={"note": "for real"}).status_code == 200
    audit = get(gw, "/admin/audit", action="error_pattern.resolve")
    assert [e["details"]["note"] for e in audit["data"]] == ["for real", "emulator fixed"]


def test_unhandled_exceptions_are_recorded_as_critical(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                       emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b])
    key = gw.create_user("10")["api_key"]
    limits = gw.container.limits
    original = limits.check

    async def broken(ctx: Any) -> Any:
        raise RuntimeError(f"limiter bug for {ctx.request_id}")

    limits.check = broken  # type: ignore[method-assign]
    try:
        r = chat(gw, key)
    finally:
        limits.check = original  # type: ignore[method-assign]
    assert r.status_code == 500 and "Traceback" not in r.text
    [event] = get(gw, "/error-monitor/critical")["data"]
    assert (event["class"], event["code"], event["status"], event["endpoint"]) == (
        "exception", "unhandled_exception", 500, "/v1/chat/completions")
    assert event["request_id"] == r.headers["x-request-id"]
    assert event["message"] == f"RuntimeError: limiter bug for {r.headers['x-request-id']}"
    [pattern] = get(gw, "/error-monitor/patterns")["data"]
    assert pattern["message"] == "RuntimeError: limiter bug for <id>"
    assert get(gw, "/error-monitor/stats")["by_class"]["exception"] == 1


def test_two_gateways_share_patterns_and_a_restart_keeps_them(gateway_factory: GatewayFactory,
                                                              databases: DatabaseFactory, emu_a: Emulator,
                                                              emu_b: Emulator) -> None:
    url = databases.url("postgresql")
    migrate(url)
    # The first writes only when read or stopped; the second every 0.2 s.
    first = gateway_factory([emu_a, emu_b], db_url=url, routing=NO_BREAKERS, errors={"flush_interval_s": 60})
    second = gateway_factory([emu_a, emu_b], db_url=url, routing=NO_BREAKERS,
                              errors={"flush_interval_s": 0.2})
    key = first.create_user("10")["api_key"]
    emu_a.set_default_fault(Fault(status=503))
    emu_b.set_default_fault(Fault(status=503))
    for gw, n in ((first, 2), (second, 3)):
        for _ in range(n):
            assert chat(gw, key).status_code == 502
    assert chat(second, key, model="nope/model").status_code == 404

    expected = {("upstream_error", "test/echo"): 5, ("model_not_found", "nope/model"): 1}
    assert wait_for(lambda: pattern_counts(first) == expected), pattern_counts(first)
    assert pattern_counts(second) == expected

    for _ in range(4):
        assert chat(first, key).status_code == 502
    first.stop()   # its four buffered errors are written on the way down
    expected[("upstream_error", "test/echo")] = 9
    assert pattern_counts(second) == expected
    second.stop()

    restarted = gateway_factory([emu_a, emu_b], db_url=url)
    assert pattern_counts(restarted) == expected
    assert get(restarted, "/error-monitor/recent")["total"] == 10
    assert get(restarted, "/error-monitor/stats")["by_class"] == {"client": 1, "upstream": 9, "gateway": 0,
                                                                   "exception": 0}


def test_failed_media_operations_are_recorded(gateway_factory: GatewayFactory, emu_a: Emulator,
                                              emu_b: Emulator) -> None:
    from tests.e2e.test_media import MODELS

    gw = gateway_factory([emu_a, emu_b], models=MODELS, routing=NO_BREAKERS)
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.create_user("10")["api_key"], max_retries=0, timeout=20)
    emu_a.push_fault(Fault(status=400, error_message="bad size 1024x7"))
    with pytest.raises(openai.BadRequestError):
        sdk.images.generate(model="test/image", prompt="fox")
    emu_a.set_default_fault(Fault(status=500))
    emu_b.set_default_fault(Fault(status=500))
    with pytest.raises(openai.InternalServerError):
        sdk.embeddings.create(model="test/embed", input="x")
    rows = get(gw, "/error-monitor/recent")["data"]
    assert [(r["endpoint"], r["class"], r["status"], r["code"], r["provider"], r["model"]) for r in rows] == [
        ("embeddings", "upstream", 502, "upstream_error", "emu-b", "test/embed"),
        ("images.generations", "client", 400, "upstream_client_error", "emu-a", "test/image")]
    assert rows[1]["message"] == "bad size 1024x7"
