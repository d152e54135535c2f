"""Customer usage analytics end to end: real requests through the gateway (two users, two keys), then every
view checked to the token and the nanodollar, isolation between users, pagination, export, bad parameters."""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from gatewayz.storage.schema import usage_records
from tests.conftest import GatewayFactory
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer, migrate

# test/echo costs $1 / $2 per million tokens (1000 / 2000 nanodollars a token); test/pricey $1000 / $1000.
PRICE = {"test/echo": (1000, 2000), "test/pricey": (1_000_000, 1_000_000)}
CSV_HEADER = ["request_id", "created_at", "model", "provider", "endpoint", "stream", "status", "error_code",
              "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "cost_nanos", "latency_ms",
              "ttft_ms", "api_key_id", "images", "audio_ms", "characters"]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _expected(request_id: str, key_id: int, model: str, provider: str | None, prompt: int, completion: int,
              *, status: int = 200, stream: bool = False, endpoint: str = "chat.completions") -> dict[str, Any]:
    pin, pout = PRICE[model]
    cost = prompt * pin + completion * pout if status == 200 else 0
    return {"request_id": request_id, "api_key_id": key_id, "model": model, "provider": provider,
            "prompt_tokens": prompt, "completion_tokens": completion, "cost_nanos": cost, "status": status,
            "stream": stream, "endpoint": endpoint}


def _chat(gw: GatewayServer, key: str, key_id: int, model: str = "test/echo", text: str = "hello there",
          **kw: Any) -> dict[str, Any]:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=20, **kw)
    reply = raw.parse()
    rid, provider = raw.headers["x-request-id"], raw.headers["x-gateway-provider"]
    return _expected(rid, key_id, model, provider, reply.usage.prompt_tokens, reply.usage.completion_tokens)


def _stream(gw: GatewayServer, key: str, key_id: int) -> dict[str, Any]:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="test/echo", messages=[{"role": "user", "content": "stream me a few words"}], max_tokens=20,
        stream=True, stream_options={"include_usage": True})
    usage = [chunk.usage for chunk in raw.parse() if chunk.usage is not None][-1]
    return _expected(raw.headers["x-request-id"], key_id, "test/echo", raw.headers["x-gateway-provider"],
                     usage.prompt_tokens, usage.completion_tokens, stream=True)


def _failed(gw: GatewayServer, key: str, key_id: int) -> dict[str, Any]:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="test/pricey", max_tokens=20,
                                       messages=[{"role": "user", "content": "x [[fault:status=500]]"}])
    assert err.value.status_code == 502
    return _expected(err.value.response.headers["x-request-id"], key_id, "test/pricey", None, 0, 0, status=502)


def _anthropic(gw: GatewayServer, key: str, key_id: int) -> dict[str, Any]:
    client = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)
    raw = client.messages.with_raw_response.create(model="test/echo", max_tokens=20,
                                                   messages=[{"role": "user", "content": "hi from anthropic"}])
    msg = raw.parse()
    return _expected(raw.headers["x-request-id"], key_id, "test/echo", raw.headers["x-gateway-provider"],
                     msg.usage.input_tokens, msg.usage.output_tokens, endpoint="messages")


def _sums(records: list[dict[str, Any]]) -> dict[str, int]:
    prompt = sum(r["prompt_tokens"] for r in records)
    completion = sum(r["completion_tokens"] for r in records)
    spend = sum(r["cost_nanos"] for r in records)
    return {"requests": len(records), "errors": sum(r["status"] != 200 for r in records), "prompt_tokens": prompt,
            "completion_tokens": completion, "total_tokens": prompt + completion, "spend_nanos": spend}


def _grouped(records: list[dict[str, Any]], field: str) -> dict[Any, dict[str, int]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r[field]].append(r)
    return {k: _sums(v) for k, v in groups.items()}


def _measures(bucket: dict[str, Any]) -> dict[str, int]:
    """A bucket's measures, after checking its float spend against its exact nanodollars."""
    assert bucket["spend"] == bucket["spend_nanos"] / 1e9
    return {k: bucket[k] for k in ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens",
                                   "spend_nanos")}


def _view(buckets: list[dict[str, Any]], field: str) -> dict[Any, dict[str, int]]:
    """A breakdown as {group: measures}."""
    return {b[field]: _measures(b) for b in buckets}


def _nearest_rank(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[-(-p * len(ordered) // 100) - 1]


def _get(gw: GatewayServer, key: str, path: str, **params: Any) -> Any:
    r = httpx.get(gw.url + path, headers=_auth(key), params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def traffic(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator, backend: str) -> dict[str, Any]:
    """Alice: 8 requests on two keys (chat, a stream, Anthropic Messages, a dear model, a failure); Bob: 2."""
    gw = gateway_factory([emu_a, emu_b], backend=backend)
    alice, bob = gw.create_user("10"), gw.create_user("10")
    r = httpx.post(gw.url + "/user/api-keys", headers=_auth(alice["api_key"]), json={"name": "batch-jobs"})
    assert r.status_code == 201, r.text
    k1, k2 = (alice["api_key"], alice["key_id"]), (r.json()["api_key"], r.json()["id"])
    a = [_chat(gw, *k1), _chat(gw, *k1, text="a somewhat longer question about the weather"), _stream(gw, *k1),
         _anthropic(gw, *k1), _chat(gw, *k2, model="test/pricey"), _chat(gw, *k2), _failed(gw, *k2),
         _chat(gw, *k2, model="test/pricey", text="one more")]
    b = [_chat(gw, bob["api_key"], bob["key_id"]), _chat(gw, bob["api_key"], bob["key_id"], text="bob here")]
    return {"gw": gw, "alice": alice, "bob": bob, "k1": k1, "k2": k2, "a": a, "b": b}


def test_every_view_adds_up_for_each_user(traffic: dict[str, Any]) -> None:
    gw, alice, bob, a, b = traffic["gw"], traffic["alice"], traffic["bob"], traffic["a"], traffic["b"]
    akey, k2_id = alice["api_key"], traffic["k2"][1]
    stats = _get(gw, akey, "/user/activity/stats")
    assert stats["currency"] == "USD"
    assert _measures(stats["totals"]) == _sums(a)
    # The money in the views is the money that left the balance.
    assert stats["totals"]["spend_nanos"] == 10 * 10**9 - gw.balance_nanos(akey)
    assert _view(stats["by_model"], "model") == _grouped(a, "model")
    assert _view(stats["by_provider"], "provider") == _grouped(a, "provider")
    assert _view(stats["by_api_key"], "api_key_id") == _grouped(a, "api_key_id")
    assert {k["api_key_id"]: k["name"] for k in stats["by_api_key"]} == {alice["key_id"]: "default",
                                                                        k2_id: "batch-jobs"}
    # By the UTC day each record was written (one day, unless the test ran across midnight).
    log = _get(gw, akey, "/user/activity/log", limit=1000)
    days = {r["request_id"]: r["created_at"][:10] for r in log["data"]}
    a = [r | {"date": days[r["request_id"]]} for r in a]
    assert _view(stats["by_day"], "date") == _grouped(a, "date")
    assert stats["by_model"][0]["model"] == "test/pricey"  # dearest first

    bob_stats = _get(gw, bob["api_key"], "/user/activity/stats", days=1)
    assert _measures(bob_stats["totals"]) == _sums(b)
    assert [k["api_key_id"] for k in bob_stats["by_api_key"]] == [bob["key_id"]]

    # The log, newest first, with every field of every record.
    assert log["total"] == 8 and [r["request_id"] for r in log["data"]] == [r["request_id"] for r in reversed(a)]
    for got, want in zip(log["data"], reversed(a), strict=True):
        assert {k: got[k] for k in want if k != "date"} == {k: want[k] for k in want if k != "date"}
        assert got["total_tokens"] == want["prompt_tokens"] + want["completion_tokens"]
        assert got["cost"] == want["cost_nanos"] / 1e9 and got["latency_ms"] > 0
        assert (got["ttft_ms"] is not None) == want["stream"]
        assert got["error_code"] == (None if want["status"] == 200 else "upstream_error")
    bob_log = _get(gw, bob["api_key"], "/user/activity/log")
    assert bob_log["total"] == 2 and {r["request_id"] for r in bob_log["data"]} == {r["request_id"] for r in b}

    # One key: totals, by day, by model.
    usage = _get(gw, akey, f"/user/api-keys/{k2_id}/usage")
    k2_records = [r for r in a if r["api_key_id"] == k2_id]
    assert usage["key"] == {"id": k2_id, "name": "batch-jobs", "last4": traffic["k2"][0][-4:], "is_active": True}
    assert _measures(usage["totals"]) == _sums(k2_records)
    assert _view(usage["by_model"], "model") == _grouped(k2_records, "model")
    assert _view(usage["by_day"], "date") == _grouped(k2_records, "date")
    assert "by_api_key" not in usage


def test_log_pages_filters_and_real_total(traffic: dict[str, Any]) -> None:
    gw, akey, a = traffic["gw"], traffic["alice"]["api_key"], traffic["a"]
    newest_first = [r["request_id"] for r in reversed(a)]
    pages, offset = [], 0
    while True:
        page = _get(gw, akey, "/user/activity/log", limit=3, offset=offset)
        assert page["total"] == 8 and page["limit"] == 3 and page["offset"] == offset
        if not page["data"]:
            break
        assert len(page["data"]) == min(3, 8 - offset)
        pages += [r["request_id"] for r in page["data"]]
        offset += 3
    assert pages == newest_first
    for params, matching in [({"model": "test/pricey"}, [r for r in a if r["model"] == "test/pricey"]),
                             ({"provider": "emu-a"}, [r for r in a if r["provider"] == "emu-a"]),
                             ({"status": "error"}, [r for r in a if r["status"] != 200]),
                             ({"status": "success"}, [r for r in a if r["status"] == 200]),
                             ({"status": "502", "model": "test/pricey"}, [r for r in a if r["status"] == 502]),
                             ({"model": "test/echo", "limit": 2}, [r for r in a if r["model"] == "test/echo"])]:
        page = _get(gw, akey, "/user/activity/log", **params)
        assert page["total"] == len(matching), params
        newest = [r["request_id"] for r in reversed(matching)]
        assert [r["request_id"] for r in page["data"]] == newest[:params.get("limit", 50)], params
    assert _get(gw, akey, "/user/activity/log", model="test/echo")["total"] == 5
    assert _get(gw, akey, "/user/activity/log", status="success")["total"] == 7


def test_export_csv_and_json_hold_exactly_the_callers_records(traffic: dict[str, Any]) -> None:
    gw, akey, a, b = traffic["gw"], traffic["alice"]["api_key"], traffic["a"], traffic["b"]
    log = _get(gw, akey, "/user/activity/log", limit=1000)["data"]
    r = httpx.get(gw.url + "/user/usage/export", headers=_auth(akey), params={"format": "csv"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    today = datetime.now(UTC).date()
    start = (today - timedelta(days=29)).isoformat()
    assert r.headers["content-disposition"] == f'attachment; filename="gatewayz-usage-{start}-to-{today}.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == CSV_HEADER
    parsed = [dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]]
    assert [p["request_id"] for p in parsed] == [x["request_id"] for x in a]  # oldest first
    for p, want, logged in zip(parsed, a, reversed(log), strict=True):
        assert Decimal(p["cost_usd"]) * 10**9 == want["cost_nanos"] == int(p["cost_nanos"])
        assert len(p["cost_usd"].split(".")[1]) == 9
        assert (p["model"], p["provider"] or None, p["endpoint"]) == (want["model"], want["provider"],
                                                                       want["endpoint"])
        assert (int(p["prompt_tokens"]), int(p["completion_tokens"]), int(p["status"]), int(p["api_key_id"])) == (
            want["prompt_tokens"], want["completion_tokens"], want["status"], want["api_key_id"])
        assert p["stream"] == ("true" if want["stream"] else "false")
        assert float(p["latency_ms"]) == logged["latency_ms"] and p["created_at"] == logged["created_at"]
        assert p["ttft_ms"] == ("" if logged["ttft_ms"] is None else repr(logged["ttft_ms"]))

    j = httpx.get(gw.url + "/user/usage/export", headers=_auth(akey), params={"format": "json", "days": 1},
                  timeout=30)
    assert j.status_code == 200 and j.headers["content-type"] == "application/json"
    assert j.headers["content-disposition"].endswith(f'{today}-to-{today}.json"')
    assert j.json() == list(reversed(log))

    bob = httpx.get(gw.url + "/user/usage/export?format=json", headers=_auth(traffic["bob"]["api_key"])).json()
    assert [x["request_id"] for x in bob] == [x["request_id"] for x in b]
    # A window with nothing in it is a header alone / an empty array.
    tomorrow = (today + timedelta(days=1)).isoformat()
    empty = httpx.get(gw.url + "/user/usage/export", headers=_auth(akey),
                      params={"start_date": tomorrow, "end_date": tomorrow})
    assert list(csv.reader(io.StringIO(empty.text))) == [CSV_HEADER]
    empty = httpx.get(gw.url + "/user/usage/export", headers=_auth(akey),
                      params={"format": "json", "end_date": (today - timedelta(days=1)).isoformat()})
    assert empty.json() == []


def test_latency_percentiles_of_successful_requests(traffic: dict[str, Any]) -> None:
    gw, akey = traffic["gw"], traffic["alice"]["api_key"]
    log = [r for r in _get(gw, akey, "/user/activity/log", limit=1000)["data"] if r["status"] == 200]
    for model in (None, "test/pricey"):
        rows = [r for r in log if model is None or r["model"] == model]
        got = _get(gw, akey, "/user/latency", **({"model": model} if model else {}))
        assert got["model"] == model
        for field in ("latency_ms", "ttft_ms"):
            values = [r[field] for r in rows if r[field] is not None]
            assert got[field] == {"samples": len(values), **{f"p{p}": _nearest_rank(values, p) for p in (50, 95, 99)}}
    assert _get(gw, akey, "/user/latency")["latency_ms"]["samples"] == 7
    assert _get(gw, akey, "/user/latency")["ttft_ms"]["samples"] == 1
    nothing = _get(gw, traffic["bob"]["api_key"], "/user/latency", model="test/pricey")
    assert nothing["latency_ms"] == nothing["ttft_ms"] == {"samples": 0, "p50": None, "p95": None, "p99": None}


def test_another_users_key_is_not_found_and_a_revoked_key_keeps_its_history(traffic: dict[str, Any]) -> None:
    gw, alice, bob = traffic["gw"], traffic["alice"], traffic["bob"]
    k2_id = traffic["k2"][1]
    for key, path in [(bob["api_key"], f"/user/api-keys/{k2_id}/usage"),
                      (alice["api_key"], f"/user/api-keys/{bob['key_id']}/usage"),
                      (alice["api_key"], "/user/api-keys/999999/usage")]:
        r = httpx.get(gw.url + path, headers=_auth(key))
        assert r.status_code == 404 and r.json()["error"]["code"] == "api_key_not_found", path
    assert httpx.delete(gw.url + f"/user/api-keys/{k2_id}", headers=_auth(alice["api_key"])).status_code == 200
    usage = _get(gw, alice["api_key"], f"/user/api-keys/{k2_id}/usage")
    assert usage["key"]["is_active"] is False and usage["totals"]["requests"] == 4


@pytest.mark.parametrize(("path", "params"), [
    ("/user/activity/stats", {"start_date": "yesterday"}),
    ("/user/activity/stats", {"end_date": "2025-02-30"}),
    ("/user/activity/stats", {"start_date": "2025-03-02", "end_date": "2025-03-01"}),
    ("/user/activity/stats", {"start_date": "2025-03-01T10:00:00Z", "end_date": "2025-03-01T10:00:00Z"}),
    ("/user/activity/stats", {"start_date": "2024-01-01", "end_date": "2025-03-01"}),
    ("/user/activity/stats", {"days": 0}),
    ("/user/activity/stats", {"days": 367}),
    ("/user/activity/stats", {"days": 7, "start_date": "2025-03-01"}),
    ("/user/activity/stats", {"start_date": "0001-01-01"}),
    ("/user/activity/log", {"limit": 0}),
    ("/user/activity/log", {"limit": 1001}),
    ("/user/activity/log", {"offset": -1}),
    ("/user/activity/log", {"status": "failed"}),
    ("/user/usage/export", {"format": "xml"}),
    ("/user/usage/export", {"end_date": "not-a-date"}),
    ("/user/latency", {"days": "a week"}),
    ("/user/api-keys/1/usage", {"start_date": "2025-13-01"}),
])
def test_bad_parameters_are_400_in_the_openai_shape(gateway: GatewayServer, user: dict[str, Any], path: str,
                                                     params: dict[str, Any]) -> None:
    r = httpx.get(gateway.url + path, headers=_auth(user["api_key"]), params=params)
    assert r.status_code == 400, (path, params, r.text)
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"] and err["param"]


def test_date_ranges_select_records(gateway: GatewayServer, user: dict[str, Any]) -> None:
    record = _chat(gateway, user["api_key"], user["key_id"])
    today = datetime.now(UTC).date()
    cases = [({}, 1), ({"days": 1}, 1), ({"start_date": today.isoformat(), "end_date": today.isoformat()}, 1),
             ({"start_date": (today + timedelta(days=1)).isoformat(),
               "end_date": (today + timedelta(days=1)).isoformat()}, 0),
             ({"end_date": (today - timedelta(days=1)).isoformat()}, 0),
             ({"start_date": f"{today - timedelta(days=2)}T00:00:00+00:00", "end_date": f"{today}T00:00:00Z"}, 0),
             ({"start_date": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, 1)]
    for params, n in cases:
        stats = _get(gateway, user["api_key"], "/user/activity/stats", **params)
        assert stats["totals"]["requests"] == n, params
        assert stats["totals"]["spend_nanos"] == n * record["cost_nanos"], params


def test_the_container_purges_records_past_retention(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                     databases: Any) -> None:
    url = databases.url("sqlite")
    migrate(url)
    now = datetime.now(UTC)
    base = {"user_id": 1, "api_key_id": None, "endpoint": "chat.completions", "model": "test/echo", "provider": None,
            "upstream_model": None, "stream": False, "status": 200, "error_code": None, "prompt_tokens": 1,
            "completion_tokens": 1, "cached_tokens": 0, "reasoning_tokens": 0, "cost_nanos": 3000,
            "latency_ms": 1.0, "ttft_ms": None, "attempts": 1}
    engine = sa.create_engine(url.replace("+aiosqlite", ""))
    with engine.begin() as conn:
        conn.execute(usage_records.insert(), [base | {"request_id": "old", "created_at": now - timedelta(days=31)},
                                              base | {"request_id": "young", "created_at": now - timedelta(days=29)}])
    gw = gateway_factory([emu_a], db_url=url, usage={"retention_days": 30})
    deadline = time.time() + 20
    while True:
        with engine.connect() as conn:
            left = [r[0] for r in conn.execute(sa.select(usage_records.c.request_id).order_by(usage_records.c.id))]
        if left == ["young"] or time.time() > deadline:
            break
        time.sleep(0.05)
    engine.dispose()
    assert left == ["young"]
    assert gw.container.retention.retention_days == 30
