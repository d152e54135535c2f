"""Three `gatewayz serve` processes on one PostgreSQL database and one Redis, clients spreading requests
round-robin over them; one process is killed with SIGKILL in the middle of the load, then restarted on the
same port.

What a killed process means for the requests it had in flight:
- its clients see a connection error (refused, reset or a stream cut short): an error, never a hang (every
  client call has a timeout) and never a silent loss;
- the credit holds it had taken stay in the database until they expire (`credits.hold_ttl_s`); the sweeper
  of any surviving process then releases them, so `held_nanos` returns to 0;
- a request whose answer was sent but whose settlement had not been written yet is in the process's
  settlement journal (`data_dir/journal`, one per process, locked while it lives; the three processes share
  one data_dir): the restarted process replays it before serving, so it is charged all the same. Nothing is
  ever charged twice and the balance never goes below zero.

Every charge is one ledger row (one per request id) and one usage record of the same amount, the ledger sums
to the balance, and every successful response, the killed process's last answers included, is charged
exactly the `usage.cost` it reported. Each process's `inference_requests_total{status="200"}` counts exactly
the successes it served."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from gatewayz.keys.crypto import new_master_key
from gatewayz.storage.db import create_engine
from gatewayz.storage.schema import credit_holds, credit_transactions, usage_records, users
from tests.conftest import EMU_KEY
from tests.databases import DatabaseFactory, require_redis
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, migrate
from tests.net import free_port, wait_until

BIN = Path(sys.executable).parent / "gatewayz"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HOLD_TTL_S = 3
TOTAL = 150          # requests in the whole load
CLIENTS = 6          # client threads
NANOS = 1_000_000_000




def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health/quick", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Node:
    """One `gatewayz serve` process (one worker) on its own port."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg, self.log, self.port = cfg, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAYZ_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(BIN), "serve", "--config", str(self.cfg), "--port", str(self.port)],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        proc = self.proc
        assert proc is not None
        if not wait_until(lambda: _up(self.url) or proc.poll() is not None, 45) or proc.poll() is not None:
            raise RuntimeError(f"gateway at {self.url} did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Outcome:
    rid: str
    node: int
    stream: bool
    started: float
    status: int | None = None      # HTTP status, None on a connection error or timeout
    error: str | None = None
    cost: int | None = None        # usage.cost of the response, in nanodollars
    complete: bool = False         # a 200 read to its end (JSON body, or the stream's [DONE])
    detail: str = ""               # the error body of a refused request


@pytest.fixture
def nodes(tmp_path: Path, databases: DatabaseFactory, emu_a: Emulator) -> Iterator[tuple[list[Node], str]]:
    redis_url = require_redis()
    db_url = databases.url("postgresql")
    migrate(db_url)   # once, before the processes start
    provider = f"emu-{uuid.uuid4().hex[:10]}"   # the shared Redis holds breaker state by provider name
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"""
database_url: "{db_url}"
redis_url: "{redis_url}"
admin_key: {ADMIN_KEY}
encryption_key: "{new_master_key()}"
data_dir: "{tmp_path}"
workers: 1
credits: {{authority: sql, hold_ttl_s: {HOLD_TTL_S}}}
providers:
  - {{name: {provider}, type: openai, base_url: "{emu_a.base_url}", api_key: {EMU_KEY}, timeout_s: 20}}
models:
  - id: test/echo
    pricing: {{input: 100, output: 100}}
    context_length: 8192
    max_output_tokens: 50
    providers: [{{provider: {provider}, model: ok-model}}]
""")
    cluster = [Node(cfg, tmp_path / f"node{i}.log") for i in range(3)]
    try:
        for n in cluster:
            n.start()
        for n in cluster:
            n.wait_ready()
        yield cluster, db_url
    finally:
        for n in cluster:
            n.stop()


def _call(client: httpx.Client, node: Node, key: str, o: Outcome) -> None:
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": o.rid}
    body: dict[str, Any] = {"model": "test/echo", "max_tokens": 50,
                            "messages": [{"role": "user", "content": f"hello cluster {o.rid[-4:]}"}]}
    try:
        if not o.stream:
            r = client.post(node.url + "/v1/chat/completions", headers=headers, json=body)
            o.status = r.status_code
            if r.status_code == 200:
                o.cost = round(r.json()["usage"]["cost"] * NANOS)
                o.complete = True
            else:
                o.detail = r.text[:300]
            return
        body.update(stream=True, stream_options={"include_usage": True})
        with client.stream("POST", node.url + "/v1/chat/completions", headers=headers, json=body) as r:
            o.status = r.status_code
            if r.status_code != 200:
                o.detail = r.read().decode()[:300]
                return
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    o.complete = True
                elif line.startswith("data: "):
                    usage = json.loads(line[6:]).get("usage")
                    if usage:
                        o.cost = round(usage["cost"] * NANOS)
    except httpx.HTTPError as exc:   # refused, reset, cut short or timed out: an error the client sees
        o.error = type(exc).__name__


def _db(db_url: str, user_id: int) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                bal, held = (await conn.execute(sa.select(users.c.balance_nanos, users.c.held_nanos)
                                                .where(users.c.id == user_id))).one()
                t = credit_transactions.c
                ledger = (await conn.execute(sa.select(t.type, t.amount_nanos, t.request_id)
                                             .where(t.user_id == user_id))).all()
                u = usage_records.c
                usage = (await conn.execute(sa.select(u.request_id, u.cost_nanos)
                                            .where(u.user_id == user_id))).all()
                holds = (await conn.execute(sa.select(sa.func.count()).select_from(credit_holds)
                                            .where(credit_holds.c.user_id == user_id))).scalar_one()
            return {"balance": int(bal), "held": int(held), "ledger": [tuple(r) for r in ledger],
                    "usage": [tuple(r) for r in usage], "holds": int(holds)}
        finally:
            await engine.dispose()
    return asyncio.run(run())


def _ok_count(url: str) -> tuple[float, float]:
    """(inference_requests_total with status 200, cost_usd_total) of one process."""
    text = httpx.get(url + "/metrics", headers=ADMIN, timeout=10).text
    ok = cost = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "inference_requests_total" and s.labels.get("status") == "200":
                ok += s.value
            elif s.name == "cost_usd_total":
                cost += s.value
    return ok, cost


def test_sigkill_of_one_process_loses_no_request_and_no_credit(nodes: tuple[list[Node], str],
                                                               emu_a: Emulator) -> None:
    cluster, db_url = nodes
    made = httpx.post(cluster[0].url + "/admin/users", headers=ADMIN, timeout=10,
                      json={"email": f"k{uuid.uuid4().hex[:8]}@example.com", "credits": "1"})
    assert made.status_code in (200, 201), made.text
    user_id, key = made.json()["id"], made.json()["api_key"]
    opening = _db(db_url, user_id)["balance"]
    assert opening == NANOS
    emu_a.set_default_fault(Fault(latency_ms=120, chunk_delay_ms=20))   # keep requests in flight

    victim = 1
    outcomes: list[Outcome] = []
    counter = itertools.count()
    lock = threading.Lock()
    done = threading.Semaphore(0)
    restarted = threading.Event()   # the last third of the load waits for the restarted process

    def client_loop() -> None:
        # Generous timeouts: a request never hangs, yet a slow machine never turns a success into an error.
        with httpx.Client(timeout=httpx.Timeout(30, connect=5)) as client:
            while True:
                i = next(counter)
                if i >= TOTAL:
                    return
                if i >= 2 * TOTAL // 3:
                    restarted.wait(90)
                o = Outcome(f"kill-{uuid.uuid4().hex[:12]}-{i}", i % 3, stream=i % 3 != 2, started=time.monotonic())
                with lock:
                    outcomes.append(o)
                _call(client, cluster[o.node], key, o)
                done.release()

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for _ in range(TOTAL // 3):
        done.acquire()
    cluster[victim].kill()           # SIGKILL with requests in flight on it
    dead_at = time.monotonic()       # any request started later on the victim's port meets the new process
    cluster[victim].start()          # same port, same config; the load goes on while it starts
    cluster[victim].wait_ready()
    restarted.set()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client call hung"
    assert len(outcomes) == TOTAL

    # Every request is accounted for: a complete 200 with its cost, or an error its client saw.
    for o in outcomes:
        assert (o.status == 200 and o.complete and o.cost is not None and o.error is None) \
            or o.error is not None or (o.status is not None and o.status != 200), o
    ok = [o for o in outcomes if o.status == 200 and o.complete]
    failed = [o for o in outcomes if o not in ok]
    # Only the victim's clients saw errors, and only around its death (surviving processes answer every
    # request); the load went on, so most requests succeeded.
    assert all(o.node == victim for o in failed), [o for o in failed if o.node != victim]
    assert all(o.error for o in failed), [o for o in failed if not o.error]   # no 402 from a race either
    assert failed, "the kill caused no error: it did not happen mid-load"
    assert len(ok) >= TOTAL // 2
    assert any(o.node == victim and o.started > dead_at for o in ok), "the restarted process served nothing"

    # The holds of the killed process expire and a sweeper releases them.
    assert wait_until(lambda: _db(db_url, user_id)["held"] == 0, HOLD_TTL_S * 4 + 10, 0.5), _db(db_url, user_id)
    state = _db(db_url, user_id)
    assert state["holds"] == 0
    if any(o.status == 200 and o.error for o in failed):   # a stream cut short by the kill had its hold taken
        assert wait_until(lambda: any("expired credit holds" in n.log.read_text() for n in cluster), 10)
    balance = state["balance"]
    assert 0 <= balance <= opening
    charges = [(rid, -amount) for kind, amount, rid in state["ledger"] if kind == "api_usage"]
    assert len({rid for rid, _ in charges}) == len(charges), "a request was charged twice"
    assert sum(amount for _, amount, _ in state["ledger"]) == balance   # the ledger is the balance
    assert balance == opening - sum(c for _, c in charges)
    usage = dict(state["usage"])
    assert len(usage) == len(state["usage"])
    sent = {o.rid: o for o in outcomes}
    charged = dict(charges)
    for rid, amount in charged.items():
        assert rid in sent and usage.get(rid) == amount, (rid, amount, usage.get(rid))
    for o in ok:   # answered just before the kill too: journaled, replayed by the restarted process
        assert charged.get(o.rid) == o.cost, o
    for o in failed:   # one that failed once its cost was on the wire is charged that cost or nothing
        if o.rid in charged and o.cost is not None:
            assert charged[o.rid] == o.cost, o

    # Metrics: each running process counts exactly the successes it served (the restarted one since its
    # start), and what it charged.
    for i, node in enumerate(cluster):
        mine = [o for o in ok if o.node == i and (i != victim or o.started > dead_at)]
        want_cost = sum(o.cost or 0 for o in mine) / NANOS

        def counted(url: str = node.url, want: int = len(mine)) -> bool:
            return _ok_count(url)[0] == want

        assert wait_until(counted, 10), (i, _ok_count(node.url), len(mine))
        assert abs(_ok_count(node.url)[1] - want_cost) < 1e-6
