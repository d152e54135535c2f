"""Sentry end to end, against a local HTTP server standing in for Sentry's ingestion endpoint: an unexpected
error (the database breaks under the gateway) arrives as one event tagged with the request id and the trace id,
and nothing of the request (its key, its prompt, its headers) is in what was sent. With a traces sample rate
every inference request is a transaction. Plus the before_send scrubber on its own."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gatewayz.observability.sentry import scrub
from gatewayz.settings import TracingConfig
from tests.conftest import GatewayFactory
from tests.e2e.test_tracing import OtlpReceiver, trace_of
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer


class SentryIngest:
    """Accepts envelopes at /api/<project>/envelope/ and keeps every item (header, payload, raw text)."""

    def __init__(self) -> None:
        self.items: list[tuple[dict[str, Any], Any]] = []
        self.raw: list[str] = []
        self.auth: list[str] = []
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["content-length"]))
                encoding = self.headers.get("content-encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                ingest.auth.append(self.headers.get("x-sentry-auth", ""))
                ingest.raw.append(body.decode("utf-8", "replace"))
                ingest.items += parse_envelope(body)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, kind: str, match: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for header, payload in self.items:
                if header.get("type") == kind and isinstance(payload, dict) and match(payload):
                    return payload
            time.sleep(0.05)
        raise AssertionError(f"no {kind} arrived; got {[h.get('type') for h, _ in self.items]}")


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Sentry's envelope: a header line, then per item a header line and a payload (`length` bytes, or a line)."""
    pos = body.index(b"\n") + 1 if b"\n" in body else len(body)
    items = []
    while pos < len(body):
        end = body.find(b"\n", pos)
        end = len(body) if end < 0 else end
        line = body[pos:end]
        pos = end + 1
        if not line.strip():
            continue
        header = json.loads(line)
        if "length" in header:
            payload, pos = body[pos:pos + header["length"]], pos + header["length"] + 1
        else:
            end = body.find(b"\n", pos)
            end = len(body) if end < 0 else end
            payload, pos = body[pos:end], end + 1
        try:
            items.append((header, json.loads(payload)))
        except ValueError:
            items.append((header, payload))
    return items


@pytest.fixture(scope="module")
def ingest() -> Iterator[SentryIngest]:
    server = SentryIngest()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()


def _break_the_key_table(gw: GatewayServer) -> None:
    async def rename() -> None:
        async with gw.container.db.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE api_keys RENAME TO api_keys_gone"))
    gw.run(rename())


def test_an_unexpected_error_is_reported_with_its_request_id_and_nothing_of_the_request(
        gateway_factory: GatewayFactory, emu_a: Emulator, ingest: SentryIngest, otlp: OtlpReceiver) -> None:
    gw = gateway_factory([emu_a], sentry_dsn=ingest.dsn, sentry_environment="e2e",
                         tracing=TracingConfig(exporter="otlp", endpoint=otlp.url))
    key, other = gw.create_user("10")["api_key"], gw.create_user("10")["api_key"]  # neither used yet: not cached
    prompt = f"confidential-{uuid.uuid4().hex}"
    _break_the_key_table(gw)
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=20, headers={"Authorization": f"Bearer {key}"},
                   json={"model": "test/echo", "messages": [{"role": "user", "content": prompt}]})
    assert r.status_code == 500 and r.json()["error"]["message"].startswith("Internal error")
    rid, trace_id = r.headers["x-request-id"], trace_of(r.headers["traceparent"])[0]
    event = ingest.wait("event", lambda e: e.get("tags", {}).get("request_id") == rid)
    assert event["tags"]["trace_id"] == trace_id and event["environment"] == "e2e"
    assert event["release"].startswith("gatewayz@")
    exc = event["exception"]["values"][-1]
    assert exc["type"] == "OperationalError" and "api_keys" in exc["value"]
    frames = exc["stacktrace"]["frames"]
    assert frames and not any("vars" in f for f in frames)  # local variables (the key, the body) never leave
    # The management API's 500s (FastAPI's error handler) are reported too.
    r2 = httpx.get(gw.url + "/user/balance", headers={"Authorization": f"Bearer {other}"}, timeout=20)
    assert r2.status_code == 500
    ingest.wait("event", lambda e: e.get("tags", {}).get("request_id") == r2.headers["x-request-id"])
    sent = "\n".join(ingest.raw)
    for secret in (key, key[len("gw_live_"):], other, other[len("gw_live_"):], prompt):
        assert secret not in sent, secret
    assert not any("headers" in p.get("request", {}) or "data" in p.get("request", {})
                   for h, p in ingest.items if h.get("type") == "event")
    assert all("sentry_key=public" in a for a in ingest.auth)
    events = [p for h, p in ingest.items if h.get("type") == "event" and p.get("tags", {}).get("request_id") == rid]
    assert len(events) == 1  # reported once, though logged and rendered on the way out


def test_a_traces_sample_rate_makes_each_inference_request_a_transaction(
        gateway_factory: GatewayFactory, emu_a: Emulator, ingest: SentryIngest) -> None:
    gw = gateway_factory([emu_a], sentry_dsn=ingest.dsn, sentry_traces_sample_rate=1.0)
    key = gw.create_user("10")["api_key"]
    prompt = f"private-{uuid.uuid4().hex}"
    r = httpx.post(gw.url + "/v1/chat/completions", timeout=20, headers={"Authorization": f"Bearer {key}"},
                   json={"model": "test/echo", "messages": [{"role": "user", "content": prompt}]})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    gw.container.sentry.flush()  # type: ignore[union-attr]
    txn = ingest.wait("transaction", lambda t: t.get("tags", {}).get("request_id") == rid)
    assert txn["transaction"] == "POST /v1/chat/completions" and txn["contexts"]["trace"]["op"] == "http.server"
    assert txn["contexts"]["trace"]["status"] == "ok"
    sent = "\n".join(ingest.raw)
    assert prompt not in sent and key not in sent
    # Management routes are not inference: no transaction for them.
    httpx.get(gw.url + "/v1/models", timeout=20)
    gw.container.sentry.flush()  # type: ignore[union-attr]
    assert not any(h.get("type") == "transaction" and p.get("transaction", "").endswith("/v1/models")
                   for h, p in ingest.items)


def test_the_scrubber_keeps_no_request_content_and_masks_credentials() -> None:
    event = {
        "request": {"url": "http://gw/v1/chat/completions", "method": "POST", "data": {"messages": "secret"},
                    "headers": {"Authorization": "Bearer gw_live_abcdef123456"}, "cookies": "session=1",
                    "query_string": "key=gw_live_abcdef123456"},
        "user": {"ip_address": "10.1.2.3", "email": "a@b.c"},
        "exception": {"values": [{"type": "ValueError", "value": "bad key gw_live_abcdef123456 and sk-abcdefghijkl",
                                  "stacktrace": {"frames": [{"function": "f", "vars": {"api_key": "gw_live_x"}}]}}]},
        "breadcrumbs": {"values": [{"message": "Authorization: Bearer eyJhbGciOi.xyz"}]},
        "extra": {"note": "token sk-ant-api03-abcdefgh"}, "tags": {"request_id": "req_1"}}
    out = scrub(event)
    assert out["request"] == {"url": "http://gw/v1/chat/completions", "method": "POST"}
    assert "user" not in out and out["tags"] == {"request_id": "req_1"}
    value = out["exception"]["values"][0]
    assert value["value"] == "bad key gw_live_*** and sk-***" and value["stacktrace"]["frames"] == [{"function": "f"}]
    assert out["breadcrumbs"]["values"][0]["message"] == "Authorization: Bearer ***"
    assert out["extra"]["note"] == "token sk-***"
    text = json.dumps(out)
    assert "abcdef123456" not in text and "secret" not in text and "10.1.2.3" not in text
