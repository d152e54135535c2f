"""What the gateway logs about requests, at DEBUG, through its own JSON formatter: never the caller's API key,
never the prompt, unless an operator turns `log_prompts` on (then the messages, at DEBUG, credentials masked)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gatewayz.observability.logging import JsonFormatter
from tests.conftest import GatewayFactory
from tests.emulator import Emulator
from tests.gateway_server import GatewayServer

CLIENT_SIDE = ("httpx", "httpcore", "openai", "anthropic")  # the test's own HTTP clients, not the gateway


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(CLIENT_SIDE):
            self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[Captured]:
    root = logging.getLogger()
    handler, level = Captured(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _exercise(gw: GatewayServer, key: str, marker: str) -> list[httpx.Response]:
    """Requests that make the gateway log: success, stream, missing usage, failover, errors of every stage."""
    auth = {"Authorization": f"Bearer {key}"}
    chat = gw.url + "/v1/chat/completions"

    def body(extra: str = "", **kw: Any) -> dict[str, Any]:
        return {"model": "test/echo", "messages": [{"role": "user", "content": f"{marker} {extra}"}], **kw}

    with httpx.Client(timeout=20) as c:
        out = [c.post(chat, json=body(), headers=auth),
               c.post(chat, json=body(stream=True, stream_options={"include_usage": True}), headers=auth),
               c.post(chat, json=body("[[fault@a:omit_usage=true]]"), headers=auth),
               c.post(chat, json=body("[[fault@a:status=503]]"), headers=auth),
               c.post(chat, json=body("[[fault:status=500]]"), headers=auth),
               c.post(chat, json=body("[[fault@a:drop_after_chunks=1]]", stream=True), headers=auth),
               c.post(chat, json=body(model="no/such-model"), headers=auth),
               c.post(chat, content=f'{{"model": "test/echo", "messages": "{marker}"'.encode(), headers=auth),
               c.post(chat, json=body(), headers={"Authorization": f"Bearer {key}x"}),
               c.post(gw.url + "/v1/messages", json={"model": "test/echo", "max_tokens": 50, "messages": [
                   {"role": "user", "content": marker}]}, headers={"x-api-key": key,
                                                                   "anthropic-version": "2023-06-01"})]
    gw.drain()
    return out


def test_keys_and_prompts_are_never_logged(gateway_factory: GatewayFactory, emu_a: Emulator, emu_b: Emulator,
                                           logs: Captured) -> None:
    gw = gateway_factory([emu_a, emu_b])
    key = gw.create_user("10")["api_key"]
    marker = f"secret-prompt-{uuid.uuid4().hex}"
    statuses = [r.status_code for r in _exercise(gw, key, marker)]
    assert statuses == [200, 200, 200, 200, 502, 200, 404, 400, 401, 200]
    # The gateway did log about these requests (so the capture works), naming them by request id ...
    assert "billing an estimate" in logs.text and "ended early" in logs.text
    assert any(json.loads(line)["level"] == "DEBUG" for line in logs.lines)
    # ... and neither the key (nor its secret part) nor the prompt appears anywhere.
    assert key not in logs.text and key[len("gw_live_"):] not in logs.text
    assert marker not in logs.text


def test_log_prompts_logs_the_messages_at_debug_with_credentials_masked(
        gateway_factory: GatewayFactory, emu_a: Emulator, logs: Captured) -> None:
    gw = gateway_factory([emu_a], log_prompts=True)
    key = gw.create_user("10")["api_key"]
    marker = f"logged-prompt-{uuid.uuid4().hex}"
    leaked = "sk-proj-abcdefghijklmnopqrstuvwx"
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20, json={
        "model": "echo", "messages": [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": f"{marker} my key is {leaked} and {key}"}]})
    assert r.status_code == 200
    content = [json.loads(line) for line in logs.lines if marker in line]
    assert len(content) == 1
    line = content[0]
    assert line["level"] == "DEBUG" and line["logger"] == "gatewayz.inference"
    assert line["request_id"] == r.headers["x-request-id"] and "content for echo:" in line["message"]
    assert "be brief" in line["message"] and "sk-***" in line["message"] and "gw_live_***" in line["message"]
    assert leaked not in logs.text and key not in logs.text
    # At INFO (the default level) the setting shows nothing.
    logging.getLogger().setLevel(logging.INFO)
    logs.lines.clear()
    httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=20,
               json={"model": "echo", "messages": [{"role": "user", "content": marker}]})
    assert marker not in logs.text


def test_log_prompts_covers_media_requests(gateway_factory: GatewayFactory, emu_a: Emulator, logs: Captured) -> None:
    from decimal import Decimal

    from gatewayz.settings import ModelConfig, ModelRoute, Pricing
    embed = ModelConfig(id="test/embed", mode="embedding", pricing=Pricing(input=Decimal("0.02")),
                        providers=[ModelRoute(provider="emu-a", model="up-embed")])
    gw = gateway_factory([emu_a], log_prompts=True, models=[embed])
    key = gw.create_user("10")["api_key"]
    marker = f"embedded-{uuid.uuid4().hex}"
    r = httpx.post(gw.url + "/v1/embeddings", headers={"Authorization": f"Bearer {key}"}, timeout=20,
                   json={"model": "test/embed", "input": [marker]})
    assert r.status_code == 200
    assert [json.loads(line)["logger"] for line in logs.lines if marker in line] == ["gatewayz.media"]
