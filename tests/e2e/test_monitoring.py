"""Operator monitoring views and the Grafana SimpleJSON datasource, end to end on SQLite and PostgreSQL.

Real requests go through the gateway to the emulators (faults make upstream failures); each view's numbers
are then checked exactly against what the clients saw: statuses and providers from the responses, every
request's row from /v1/generation, and money from the users' balances (the ledger)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.databases import _pg_exec
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, GatewayServer

MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Traffic:
    """Sends chat requests and remembers, per request id, what the client saw."""

    def __init__(self, gw: GatewayServer) -> None:
        self.gw = gw
        self.sent: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}

    def chat(self, user: dict[str, Any], text: str = "hello there", model: str = "test/echo",
             stream: bool = False) -> int:
        rid = "mon-" + uuid.uuid4().hex[:12]
        body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
        headers = {"Authorization": f"Bearer {user['api_key']}", "X-Request-ID": rid}
        with httpx.stream("POST", self.gw.url + "/v1/chat/completions", json=body, headers=headers,
                          timeout=30) as r:
            r.read()
        status = r.status_code if not (stream and b"ended before completion" in r.content) else 502
        self.sent[rid] = {"user": user, "status": status, "provider": r.headers.get("x-gateway-provider")}
        return status

    def rows(self) -> list[dict[str, Any]]:
        """Every request's usage row, read one by one as its user (the billing view of the same table)."""
        self.gw.drain()
        out = []
        for rid, seen in self.sent.items():
            g = httpx.get(self.gw.url + "/v1/generation", params={"id": rid},
                          headers={"Authorization": f"Bearer {seen['user']['api_key']}"}).json()["data"]
            assert g["status"] == seen["status"], (rid, g, seen)
            out.append({**g, "user_id": seen["user"]["id"]})
        return out


def admin(gw: GatewayServer, path: str, **params: Any) -> Any:
    r = httpx.get(gw.url + path, params=params, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def post(gw: GatewayServer, path: str, body: Any) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def nearest_rank(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[-(-p * len(ordered) // 100) - 1]


def pcts(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), **{f"p{p}": nearest_rank(values, p) for p in (50, 95, 99)}}


def epoch_ms(iso: str) -> int:
    return (datetime.fromisoformat(iso) - EPOCH) // MS


@pytest.fixture
def busy(request: pytest.FixtureRequest, gateway_factory: GatewayFactory, emu_a: Emulator,
         emu_b: Emulator) -> tuple[GatewayServer, Traffic, list[dict[str, Any]]]:
    """A gateway with mixed traffic from two users: successes, failovers, total failures, a cut stream."""
    gw = gateway_factory([emu_a, emu_b], backend=request.param)
    alice, bob = gw.create_user("10"), gw.create_user("10")
    t = Traffic(gw)
    t.users = {"alice": alice, "bob": bob}
    for text in ("hello there", "one two three", "a b c d e f"):
        assert t.chat(alice, text) == 200
    assert t.chat(alice, "streamed words here", stream=True) == 200
    assert t.chat(alice, "moved on [[fault@a:status=500]]") == 200           # served by emu-b
    assert t.chat(bob, "pricey one", model="test/pricey") == 200
    assert t.chat(bob, "pricey two words", model="test/pricey", stream=True) == 200
    assert t.chat(alice, "all down [[fault:status=500]]") == 502             # no provider served it
    assert t.chat(bob, "all down again [[fault:status=503]]") == 502
    assert t.chat(bob, "cut short [[fault@a:drop_after_chunks=2]]", stream=True) == 502  # emu-a, mid-stream
    return gw, t, t.rows()


BOTH = pytest.mark.parametrize("busy", ["sqlite", "postgresql"], indirect=True)


@BOTH
def test_realtime_and_error_rates_are_exact(busy: tuple[GatewayServer, Traffic, list[dict[str, Any]]]) -> None:
    gw, t, rows = busy
    assert Counter(r["provider"] for r in rows) == {"emu-a": 7, "emu-b": 1, None: 2}
    stats = admin(gw, "/api/monitoring/stats/realtime", minutes=10)
    errors = [r for r in rows if r["status"] >= 400]
    ok = [r for r in rows if r["status"] < 400]
    assert (stats["requests"], stats["errors"]) == (10, 3) and stats["error_rate"] == 0.3
    assert stats["tokens_in"] == sum(r["prompt_tokens"] for r in rows)
    assert stats["tokens_out"] == sum(r["completion_tokens"] for r in rows)
    assert stats["cost_nanos"] == sum(r["cost_nanos"] for r in rows) > 0
    assert stats["requests_per_second"] == pytest.approx(10 / 600, abs=1e-6)
    assert stats["latency_ms"] == pytest.approx(pcts([r["latency_ms"] for r in ok]))
    by = {p["provider"]: p for p in stats["by_provider"]}
    assert set(by) == {"emu-a", "emu-b", None}
    assert (by["emu-a"]["requests"], by["emu-a"]["errors"]) == (7, 1)
    assert (by[None]["requests"], by[None]["errors"], by[None]["latency_ms"]["p50"]) == (2, 2, None)
    assert by["emu-b"]["latency_ms"] == pytest.approx(pcts([r["latency_ms"] for r in ok if r["provider"] == "emu-b"]))

    rates = admin(gw, "/api/monitoring/error-rates", hours=1)
    assert (rates["requests"], rates["errors"], rates["error_rate"]) == (10, 3, 0.3)
    prov = {g["provider"]: g for g in rates["by_provider"]}
    assert prov["emu-a"]["error_rate"] == pytest.approx(1 / 7) and prov["emu-a"]["error_statuses"] == {"502": 1}
    assert prov[None] == {"provider": None, "requests": 2, "errors": 2, "error_rate": 1.0,
                          "error_statuses": {"502": 2}}
    models = {g["model"]: g for g in rates["by_model"]}
    assert (models["test/echo"]["requests"], models["test/echo"]["errors"]) == (8, 3)
    assert (models["test/pricey"]["requests"], models["test/pricey"]["errors"]) == (2, 0)
    assert len(errors) == 3
    # A window before any traffic: real zeros and null rates, not invented figures.
    empty = admin(gw, "/api/monitoring/error-rates", end=(datetime.now(UTC) - timedelta(hours=2)).isoformat())
    assert (empty["requests"], empty["error_rate"], empty["by_model"]) == (0, None, [])


@BOTH
def test_cost_analysis_matches_the_ledger(busy: tuple[GatewayServer, Traffic, list[dict[str, Any]]]) -> None:
    gw, t, rows = busy
    users = {u["id"]: u for u in t.users.values()}
    spent = {uid: 10_000_000_000 - gw.balance_nanos(u["api_key"]) for uid, u in users.items()}
    cost = admin(gw, "/api/monitoring/cost-analysis", hours=1)
    assert cost["cost_nanos"] == sum(spent.values()) == sum(r["cost_nanos"] for r in rows)
    assert cost["cost_usd"] == pytest.approx(cost["cost_nanos"] / 1e9)
    assert {u["user_id"]: u["cost_nanos"] for u in cost["by_user"]} == spent and cost["users"] == 2
    assert cost["by_user"][0]["cost_nanos"] == max(spent.values())  # dearest first
    per_model = Counter[str]()
    for r in rows:
        per_model[r["model"]] += r["cost_nanos"]
    assert {m["model"]: m["cost_nanos"] for m in cost["by_model"]} == per_model
    assert sum(p["cost_nanos"] for p in cost["by_provider"]) == cost["cost_nanos"]
    assert sum(d["cost_nanos"] for d in cost["by_day"]) == cost["cost_nanos"]
    assert {d["day"] for d in cost["by_day"]} <= {datetime.now(UTC).date().isoformat(),
                                                   (datetime.now(UTC) - timedelta(days=1)).date().isoformat()}
    top = admin(gw, "/api/monitoring/cost-analysis", hours=1, top_users=1)
    assert len(top["by_user"]) == 1 and top["users"] == 2


@BOTH
def test_request_views_paginate_and_filter(busy: tuple[GatewayServer, Traffic, list[dict[str, Any]]]) -> None:
    gw, t, rows = busy
    counts = admin(gw, "/api/monitoring/chat-requests/counts")
    assert {k: counts[k] for k in ("total", "ok", "errors", "streamed")} == {"total": 10, "ok": 7, "errors": 3,
                                                                            "streamed": 3}
    assert counts["by_status"] == {"200": 7, "502": 3} and counts["by_endpoint"] == {"chat.completions": 10}
    models = {m["model"]: m for m in admin(gw, "/api/monitoring/chat-requests/models")["data"]}
    assert set(models) == {"test/echo", "test/pricey"}
    assert (models["test/echo"]["requests"], models["test/echo"]["providers"]) == (8, ["emu-a", "emu-b"])
    assert (models["test/pricey"]["requests"], models["test/pricey"]["providers"]) == (2, ["emu-a"])

    page = admin(gw, "/api/monitoring/chat-requests", limit=3, offset=2)
    assert page["total"] == 10 and len(page["data"]) == 3
    everything = admin(gw, "/api/monitoring/chat-requests", limit=100)["data"]
    assert [r["request_id"] for r in everything[2:5]] == [r["request_id"] for r in page["data"]]
    assert [r["created_at"] for r in everything] == sorted((r["created_at"] for r in everything), reverse=True)
    assert {r["request_id"] for r in everything} == set(t.sent)
    bob = t.users["bob"]["id"]
    for params, expected in (({"status": "error"}, 3), ({"status": "502"}, 3), ({"status": "ok"}, 7),
                             ({"model": "test/pricey"}, 2), ({"provider": "emu-b"}, 1), ({"user_id": bob}, 4),
                             ({"model": "test/echo", "status": "error", "limit": 1}, 3),
                             ({"model": "test/pricey", "status": "error"}, 0)):
        got = admin(gw, "/api/monitoring/chat-requests", **params)
        assert got["total"] == expected, params
    assert admin(gw, "/api/monitoring/chat-requests", model="nope")["total"] == 0
    r = httpx.get(gw.url + "/api/monitoring/chat-requests", params={"status": "weird"},
                  headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


@BOTH
def test_latency_per_provider_and_model(busy: tuple[GatewayServer, Traffic, list[dict[str, Any]]]) -> None:
    gw, t, rows = busy
    lat = admin(gw, "/api/monitoring/latency/emu-a/test/echo")  # the model id holds a slash
    mine = [r for r in rows if r["provider"] == "emu-a" and r["model"] == "test/echo" and r["status"] < 400]
    assert (lat["requests"], lat["errors"]) == (5, 1)
    expected = pcts([r["latency_ms"] for r in mine])
    assert {k: lat["latency_ms"][k] for k in expected} == pytest.approx(expected)
    assert lat["latency_ms"]["mean"] == pytest.approx(sum(r["latency_ms"] for r in mine) / 4, abs=1e-3)
    assert lat["ttft_ms"] == pytest.approx(pcts([r["ttft_ms"] for r in mine if r["stream"]]), abs=1e-3)
    assert lat["ttft_ms"]["count"] == 1
    none = admin(gw, "/api/monitoring/latency/emu-b/test/pricey")
    assert none["requests"] == 0 and none["latency_ms"]["p95"] is None and none["ttft_ms"]["count"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_anomaly_detector_flags_an_error_burst(backend: str, gateway_factory: GatewayFactory, emu_a: Emulator,
                                               emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], backend=backend)
    user = gw.create_user("10")
    t = Traffic(gw)
    for _ in range(8):
        assert t.chat(user) == 200
    gw.drain()
    quiet = admin(gw, "/api/monitoring/anomalies")
    assert quiet["anomalies"] == [] and quiet["checked"] == {"providers": 1, "models": 1, "users": 1}
    time.sleep(1.0)
    split = datetime.now(UTC)
    time.sleep(0.3)
    for _ in range(4):  # (a fifth would open the circuit breakers: 503s, errors all the same)
        assert t.chat(user, "burst [[fault:status=500]]") == 502        # every provider fails: per model
    for _ in range(5):
        assert t.chat(user, "cut [[fault@a:drop_after_chunks=2]]", stream=True) == 502  # emu-a fails mid-stream
    gw.drain()
    window = (datetime.now(UTC) - split).total_seconds() + 0.15
    found = admin(gw, "/api/monitoring/anomalies", window_minutes=window / 60, baseline_minutes=10)
    flagged = {(a["type"], a["scope"], a["key"]): a for a in found["anomalies"]}
    assert set(flagged) == {("error_rate", "model", "test/echo"), ("error_rate", "provider", "emu-a")}
    model = flagged[("error_rate", "model", "test/echo")]
    assert model["current"] == {"requests": 9, "errors": 9, "error_rate": 1.0}
    assert model["baseline"] == {"requests": 8, "errors": 0, "error_rate": 0.0}
    # pooled two-proportion z: p = 9/17, z = 1 / sqrt(p (1 - p) (1/9 + 1/8))
    assert model["z_score"] == pytest.approx(1 / ((9 / 17) * (8 / 17) * (1 / 9 + 1 / 8)) ** 0.5, abs=1e-3)
    provider = flagged[("error_rate", "provider", "emu-a")]
    assert provider["current"]["errors"] == 5 and provider["baseline"]["requests"] == 8
    # A stricter z threshold than the evidence clears nothing: the rule really compares with the baseline.
    strict = admin(gw, "/api/monitoring/anomalies", window_minutes=window / 60, baseline_minutes=10,
                   z_threshold=10)
    assert strict["anomalies"] == []


def test_cost_and_latency_spikes(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b])
    calm, spender = gw.create_user("10"), gw.create_user("10")
    t = Traffic(gw)
    for _ in range(5):
        assert t.chat(calm) == 200
    gw.drain()
    time.sleep(1.0)
    split = datetime.now(UTC)
    time.sleep(0.3)
    for _ in range(5):
        assert t.chat(calm, "slow [[fault:latency_ms=800]]") == 200
    for _ in range(2):
        assert t.chat(spender, "big spender", model="test/pricey") == 200
    gw.drain()
    window = (datetime.now(UTC) - split).total_seconds() + 0.15
    found = admin(gw, "/api/monitoring/anomalies", window_minutes=window / 60, baseline_minutes=10,
                  min_cost_usd="0.001")
    flagged = {(a["type"], a["key"]): a for a in found["anomalies"]}
    assert set(flagged) == {("latency_p95", "emu-a"), ("cost", spender["id"])}
    assert flagged[("latency_p95", "emu-a")]["current"]["p95_ms"] >= 800
    spent = 10_000_000_000 - gw.balance_nanos(spender["api_key"])
    assert flagged[("cost", spender["id"])]["current"]["cost_nanos"] == spent


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_simplejson_datasource(backend: str, gateway_factory: GatewayFactory, emu_a: Emulator,
                               emu_b: Emulator) -> None:
    gw = gateway_factory([emu_a, emu_b], backend=backend)
    user = gw.create_user("10")
    t = Traffic(gw)
    start = datetime.now(UTC) - timedelta(seconds=5)
    assert t.chat(user) == 200 and t.chat(user, "x [[fault:status=500]]") == 502
    time.sleep(1.1)
    assert t.chat(user, "later") == 200 and t.chat(user, "and more", stream=True) == 200
    rows = t.rows()
    end = datetime.now(UTC)
    for path in ("/prometheus/datasource", "/prometheus/datasource/"):
        assert admin(gw, path)["status"] == "success"
    names = post(gw, "/prometheus/datasource/search", {"target": ""}).json()
    assert {"requests", "errors", "error_rate", "cost_usd", "latency_p95_ms", "requests_by_provider"} <= set(names)
    assert post(gw, "/prometheus/datasource/search", {"target": "LATENCY"}).json() == \
        ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]

    listing = admin(gw, "/api/monitoring/chat-requests", limit=100)["data"]
    stamps = {r["request_id"]: epoch_ms(r["created_at"]) for r in listing}
    body = {"range": {"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat(), "raw": {}},
            "intervalMs": 1000, "maxDataPoints": 500, "panelId": 1,
            "targets": [{"target": "requests", "refId": "A", "type": "timeserie"},
                        {"target": "errors", "refId": "B"}, {"target": "error_rate", "refId": "C"},
                        {"target": "latency_p50_ms", "refId": "D"}, {"target": "requests_by_provider", "refId": "E"},
                        {"target": "cost_usd", "refId": "F", "type": "table"}, {"target": "", "refId": "G"}]}
    r = post(gw, "/prometheus/datasource/query", body)
    assert r.status_code == 200, r.text
    series = {s.get("target", "table"): s for s in r.json()}
    ticks = list(range(epoch_ms(start.isoformat()) // 1000 * 1000, epoch_ms(end.isoformat()), 1000))
    expected = Counter(stamps[rid] // 1000 * 1000 for rid in t.sent)
    assert [ts for _, ts in series["requests"]["datapoints"]] == ticks  # every bucket, empty ones are real 0
    assert series["requests"]["datapoints"] == [[expected.get(ts, 0), ts] for ts in ticks]
    assert series["requests"]["refId"] == "A"
    failed = Counter(stamps[rid] // 1000 * 1000 for rid, s in t.sent.items() if s["status"] >= 400)
    assert series["errors"]["datapoints"] == [[failed.get(ts, 0), ts] for ts in ticks]
    assert series["error_rate"]["datapoints"] == [[round(failed.get(ts, 0) / n, 6), ts]
                                                  for ts, n in sorted(expected.items())]  # only where requests were
    ok_per_tick: dict[int, list[float]] = {}
    for row in rows:
        if row["status"] < 400:
            ok_per_tick.setdefault(stamps[row["id"]] // 1000 * 1000, []).append(row["latency_ms"])
    assert series["latency_p50_ms"]["datapoints"] == [[pytest.approx(nearest_rank(v, 50)), ts]
                                                      for ts, v in sorted(ok_per_tick.items())]
    assert series['requests_by_provider{provider="emu-a"}']["datapoints"] == \
        [[expected.get(ts, 0) - failed.get(ts, 0), ts] for ts in ticks]
    assert series['requests_by_provider{provider="none"}']["datapoints"] == [[failed.get(ts, 0), ts] for ts in ticks]
    table = series["table"]
    assert table["type"] == "table" and [c["text"] for c in table["columns"]] == ["Time", "cost_usd"]
    assert sum(v for _, v in table["rows"]) == pytest.approx(sum(r["cost_nanos"] for r in rows) / 1e9)

    coarse = post(gw, "/prometheus/datasource/query", {**body, "intervalMs": 3_600_000,
                                                       "targets": [{"target": "requests"}]}).json()
    assert sum(v for v, _ in coarse[0]["datapoints"]) == 4
    assert all(ts % 3_600_000 == 0 for _, ts in coarse[0]["datapoints"])
    later = datetime.now(UTC) + timedelta(hours=1)
    future = {"from": later.isoformat(), "to": (later + timedelta(hours=1)).isoformat()}
    ahead = post(gw, "/prometheus/datasource/query", {**body, "range": future, "targets": [{"target": "requests"}]})
    assert ahead.json() == [{"target": "requests", "refId": None, "datapoints": []}]  # the future is not zeros
    bad = post(gw, "/prometheus/datasource/query", {**body, "targets": [{"target": "made_up"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "targets[0].target"
    backwards = {**body, "range": {"from": end.isoformat(), "to": start.isoformat()}}
    assert post(gw, "/prometheus/datasource/query", backwards).status_code == 400
    assert post(gw, "/prometheus/datasource/query", {"targets": []}).status_code == 400


def test_views_are_admin_only(gateway: GatewayServer, user: dict[str, Any]) -> None:
    paths = ["/api/monitoring/stats/realtime", "/api/monitoring/error-rates", "/api/monitoring/cost-analysis",
             "/api/monitoring/chat-requests", "/api/monitoring/chat-requests/counts",
             "/api/monitoring/chat-requests/models", "/api/monitoring/latency/emu-a/test/echo",
             "/api/monitoring/anomalies", "/prometheus/datasource", "/prometheus/datasource/"]
    for path in paths:
        assert httpx.get(gateway.url + path).status_code == 401, path
        refused = httpx.get(gateway.url + path, headers={"Authorization": f"Bearer {user['api_key']}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_required", path
    for path in ("/prometheus/datasource/search", "/prometheus/datasource/query"):
        assert httpx.post(gateway.url + path, json={}).status_code == 401
        assert httpx.post(gateway.url + path, json={},
                          headers={"Authorization": f"Bearer {user['api_key']}"}).status_code == 403


VIEWS = ["/api/monitoring/stats/realtime", "/api/monitoring/error-rates", "/api/monitoring/cost-analysis",
         "/api/monitoring/chat-requests", "/api/monitoring/chat-requests/counts",
         "/api/monitoring/chat-requests/models", "/api/monitoring/latency/emu-a/test/echo",
         "/api/monitoring/anomalies", "/prometheus/datasource"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_unreadable_database_is_a_503_not_zeros(backend: str, gateway_factory: GatewayFactory,
                                                 emu_a: Emulator) -> None:
    gw = gateway_factory([emu_a], backend=backend)
    user = gw.create_user("10")
    assert Traffic(gw).chat(user) == 200
    gw.drain()
    assert admin(gw, "/api/monitoring/stats/realtime")["requests"] == 1
    url = gw.settings.database_url
    if backend == "postgresql":
        asyncio.run(_pg_exec(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    else:
        path = Path(url.split(":///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        path.mkdir()  # where the file was, something that is no database
        gw.run(gw.container.db.dispose())
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for path in VIEWS:
        r = httpx.get(gw.url + path, headers=headers, timeout=30)
        assert r.status_code == 503, (path, r.text)
        assert r.json()["error"]["code"] == "database_unavailable" and r.headers["retry-after"] == "5"
        assert set(r.json()) == {"error"}
    query = {"range": {"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T01:00:00Z"}, "intervalMs": 60000,
             "targets": [{"target": "requests"}]}
    r = post(gw, "/prometheus/datasource/query", query)
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"
