"""`gatewayz serve --workers 2` on PostgreSQL + Redis: one balance, one key revocation, every worker agrees."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import credit_transactions, users
from tests.databases import DatabaseFactory, require_redis
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY

BIN = Path(sys.executable).parent / "gatewayz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path, databases: DatabaseFactory, emu_a: Emulator) -> Any:
    redis_url = require_redis()
    db_url = databases.url("postgresql")
    port = _free_port()
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"""
database_url: {db_url}
redis_url: {redis_url}
admin_key: {ADMIN_KEY}
data_dir: {tmp_path}
providers:
  - {{name: emu-a, type: openai, base_url: "{emu_a.base_url}", api_key: emu-secret-key}}
models:
  - id: test/echo
    pricing: {{input: 1000, output: 1000}}
    context_length: 8192
    max_output_tokens: 50
    providers: [{{provider: emu-a, model: ok-model}}]
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAYZ_")}
    proc = subprocess.Popen([str(BIN), "serve", "--config", str(cfg), "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url + "/health/quick", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("cluster did not start: " + (proc.stdout.read().decode() if proc.stdout else ""))
        time.sleep(0.2)
    yield url, db_url
    proc.terminate()
    proc.wait(30)


def _db_state(db_url: str, user_id: int) -> tuple[int, int, int]:
    async def run() -> tuple[int, int, int]:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                bal, held = (await conn.execute(sa.select(users.c.balance_nanos, users.c.held_nanos)
                                                .where(users.c.id == user_id))).one()
                total = (await conn.execute(sa.select(sa.func.sum(credit_transactions.c.amount_nanos))
                                            .where(credit_transactions.c.user_id == user_id))).scalar_one()
            return int(bal), int(held), int(total)
        finally:
            await engine.dispose()
    return asyncio.run(run())


def test_two_workers_share_one_balance_and_revocations(cluster: Any, emu_a: Emulator) -> None:
    url, db_url = cluster
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    # A hold is (prompt bytes + 50 output tokens) x $1000/M: about $0.2 per request; $1 affords a few.
    made = httpx.post(url + "/admin/users", headers=admin, json={"email": "w@example.com", "credits": "1"}).json()
    key = made["api_key"]
    emu_a.set_default_fault(Fault(latency_ms=50))  # keep requests in flight together
    body = {"model": "test/echo", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}]}

    def call(_: int) -> int:
        return httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body,
                          timeout=30).status_code

    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(call, range(48)))
    assert set(codes) <= {200, 402} and 200 in codes and 402 in codes
    time.sleep(0.5)  # settlements run after the response
    balance, held, ledger = _db_state(db_url, made["id"])
    assert balance >= 0 and held == 0
    assert balance == ledger  # every change is a ledger row

    emu_a.set_default_fault(None)
    httpx.post(url + "/credits/add", headers=admin, json={"user_id": made["id"], "amount": "5"}).raise_for_status()
    keys_url = url + "/user/api-keys"
    second = httpx.post(keys_url, headers={"Authorization": f"Bearer {key}"}, json={"name": "two"}).json()
    auth2 = {"Authorization": f"Bearer {second['api_key']}"}
    for _ in range(12):  # warm both workers' caches with the second key
        assert httpx.post(url + "/v1/chat/completions", headers=auth2, json=body).status_code == 200
    httpx.delete(f"{keys_url}/{second['id']}", headers={"Authorization": f"Bearer {key}"}).raise_for_status()
    codes = [httpx.post(url + "/v1/chat/completions", headers=auth2, json=body).status_code for _ in range(12)]
    assert codes == [401] * 12

    # Whichever worker answers /metrics, it reports every worker's requests: the 48 of the burst, the 12
    # served with the second key and the 12 refused once it was revoked.
    for _ in range(4):
        text = httpx.get(url + "/metrics", headers=admin).text
        total = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "inference_requests_total")
        assert total == 48 + 12 + 12
