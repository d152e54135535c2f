"""`gatewayz serve` killed with SIGKILL while its settlements are still pending, then restarted on the same
data_dir and database: the settlement journal makes every answered request charged exactly once. And SIGTERM
during an open stream: the stream completes, its charge is written, the process exits 0 within the grace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gatewayz.keys.crypto import new_master_key
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import credit_transactions, usage_records, users
from tests.conftest import EMU_KEY
from tests.databases import DatabaseFactory
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, migrate
from tests.net import free_port, wait_until

BIN = Path(sys.executable).parent / "gatewayz"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
NANOS = 1_000_000_000


class Serve:
    """One `gatewayz serve` process on a fixed port, config and data_dir, restartable."""

    def __init__(self, tmp: Path, db_url: str, emu: Emulator, extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cfg = tmp / "gw.yaml"
        self.log = tmp / "serve.log"
        self.cfg.write_text(f"""
database_url: "{db_url}"
admin_key: {ADMIN_KEY}
encryption_key: "{new_master_key()}"
data_dir: "{tmp / 'data'}"
builtin_catalog: false
log_json: false
{extra}
providers:
  - {{name: emu, type: openai, base_url: "{emu.base_url}", api_key: {EMU_KEY}, timeout_s: 20}}
models:
  - id: test/echo
    pricing: {{input: 100, output: 100}}
    context_length: 8192
    max_output_tokens: 50
    providers: [{{provider: emu, model: ok-model}}]
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAYZ_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(BIN), "serve", "--config", str(self.cfg), "--port", str(self.port)],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            try:
                return httpx.get(self.url + "/health/quick", timeout=2).status_code == 200
            except httpx.HTTPError:
                return self.proc is not None and self.proc.poll() is not None
        assert wait_until(up, 60) and self.proc.poll() is None, self.log.read_text()[-3000:]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def serve_factory(tmp_path: Path, databases: DatabaseFactory, emu_a: Emulator) -> Any:
    started: list[Serve] = []

    def make(backend: str, extra: str) -> tuple[Serve, str]:
        db_url = databases.url(backend)
        migrate(db_url)
        s = Serve(tmp_path, db_url, emu_a, extra)
        started.append(s)
        s.start()
        return s, db_url
    yield make
    for s in started:
        s.stop()


def _user(url: str) -> tuple[int, str]:
    r = httpx.post(url + "/admin/users", headers=ADMIN, timeout=10,
                   json={"email": f"j{uuid.uuid4().hex[:8]}@example.com", "credits": "1"})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"]), str(r.json()["api_key"])


def _db(db_url: str, user_id: int) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                bal, held = (await conn.execute(sa.select(users.c.balance_nanos, users.c.held_nanos)
                                                .where(users.c.id == user_id))).one()
                t = credit_transactions.c
                ledger = [(r[0], -int(r[1])) for r in await conn.execute(
                    sa.select(t.request_id, t.amount_nanos).where(t.user_id == user_id, t.type == "api_usage"))]
                u = usage_records.c
                usage = [(r[0], int(r[1])) for r in await conn.execute(
                    sa.select(u.request_id, u.cost_nanos).where(u.user_id == user_id))]
            return {"balance": int(bal), "held": int(held), "ledger": ledger, "usage": usage}
        finally:
            await engine.dispose()
    return asyncio.run(run())


def _chat(client: httpx.Client, url: str, key: str, rid: str, stream: bool) -> int:
    """The cost (nanos) the client was told; asserts a complete 200."""
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": rid}
    body: dict[str, Any] = {"model": "test/echo", "max_tokens": 50,
                            "messages": [{"role": "user", "content": f"journal {rid}"}]}
    if not stream:
        r = client.post(url + "/v1/chat/completions", headers=headers, json=body)
        assert r.status_code == 200, r.text
        return round(r.json()["usage"]["cost"] * NANOS)
    body.update(stream=True, stream_options={"include_usage": True})
    cost, done = None, False
    with client.stream("POST", url + "/v1/chat/completions", headers=headers, json=body) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: ") and (usage := json.loads(line[6:]).get("usage")):
                cost = round(usage["cost"] * NANOS)
    assert done and cost is not None
    return cost


@pytest.mark.parametrize("backend,authority", [("sqlite", "memory"), ("postgresql", "sql")])
def test_sigkill_with_settlements_pending_loses_no_charge(serve_factory: Any, backend: str,
                                                          authority: str) -> None:
    # Settlements wait 5 s for their batch: a kill right after the answers finds them unwritten.
    node, db_url = serve_factory(backend, f"credits: {{authority: {authority}, settle_flush_ms: 5000}}")
    user_id, key = _user(node.url)
    sent: dict[str, int] = {}
    with httpx.Client(timeout=30) as client:
        for i in range(8):
            rid = f"jk-{uuid.uuid4().hex[:10]}-{i}"
            sent[rid] = _chat(client, node.url, key, rid, stream=i % 2 == 0)
    node.signal(signal.SIGKILL)
    assert node.proc is not None
    node.proc.wait(10)
    before = _db(db_url, user_id)
    written = {rid for rid, _ in before["ledger"]}
    assert set(sent) - written, "every settlement was already written: the kill tested nothing"
    journals = list((node.cfg.parent / "data" / "journal").glob("settle-*.jsonl"))
    assert journals and any(j.stat().st_size for j in journals)

    node.start()   # same data_dir, same database: replays the dead process's journal before serving
    after = _db(db_url, user_id)
    assert sorted(after["ledger"]) == sorted(sent.items())      # every answer charged, once, what the client saw
    assert sorted(after["usage"]) == sorted(sent.items())
    assert after["balance"] == NANOS - sum(sent.values()) and after["held"] == 0
    assert "replayed" in node.log.read_text()
    assert not list((node.cfg.parent / "data" / "journal").glob("settle-*.jsonl"))[1:]   # only the live one

    # The restarted process goes on charging normally, and a request id seen before is still refused.
    with httpx.Client(timeout=30) as client:
        rid = f"jk-after-{uuid.uuid4().hex[:8]}"
        sent[rid] = _chat(client, node.url, key, rid, stream=False)
        dup = client.post(node.url + "/v1/chat/completions", json={"model": "test/echo", "messages": [
            {"role": "user", "content": "again"}]}, headers={"Authorization": f"Bearer {key}",
                                                            "X-Request-ID": next(iter(sent))})
        assert dup.status_code == 409, dup.text
    node.signal(signal.SIGTERM)
    assert node.proc.wait(30) == 0
    final = _db(db_url, user_id)
    assert sorted(final["ledger"]) == sorted(sent.items()) == sorted(final["usage"])


def test_sigterm_during_a_stream_finishes_it_and_writes_its_charge(serve_factory: Any, emu_a: Emulator) -> None:
    node, db_url = serve_factory("sqlite", "shutdown_grace_s: 20\ncredits: {settle_flush_ms: 5000}")
    user_id, key = _user(node.url)
    emu_a.set_default_fault(Fault(chunk_delay_ms=150))   # a stream of a few seconds
    rid = f"jt-{uuid.uuid4().hex[:10]}"
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": rid}
    body = {"model": "test/echo", "max_tokens": 50, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "a long enough answer please, with many words in it"}]}
    first = threading.Event()
    out: dict[str, Any] = {"chunks": 0, "done": False, "cost": None}

    def read() -> None:
        with httpx.Client(timeout=30) as client, \
                client.stream("POST", node.url + "/v1/chat/completions", headers=headers, json=body) as r:
            out["status"] = r.status_code
            for line in r.iter_lines():
                if line.startswith("data: "):
                    out["chunks"] += 1
                    first.set()
                if line == "data: [DONE]":
                    out["done"] = True
                elif line.startswith("data: ") and (usage := json.loads(line[6:]).get("usage")):
                    out["cost"] = round(usage["cost"] * NANOS)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first.wait(20)
    node.signal(signal.SIGTERM)
    t0 = time.monotonic()
    # Stopped accepting: a new connection is refused while the stream still runs.
    assert wait_until(lambda: _refused(node.url), 5)
    reader.join(30)
    assert not reader.is_alive() and out["status"] == 200 and out["done"] and out["chunks"] > 3, out
    assert node.proc is not None
    assert node.proc.wait(20) == 0
    assert time.monotonic() - t0 < 20
    state = _db(db_url, user_id)   # written by the shutdown's drain, long before its 5 s batch was due
    assert state["ledger"] == [(rid, out["cost"])] and state["usage"] == [(rid, out["cost"])]
    assert state["balance"] == NANOS - out["cost"] and state["held"] == 0
    assert not list((node.cfg.parent / "data" / "journal").glob("settle-*"))   # a clean stop leaves no journal


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/health/quick", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False
