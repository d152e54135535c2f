"""Circuit breakers shared through Redis: two `gatewayz serve` processes (one worker each, different ports) on one
database and one Redis. Failures seen by one process open the breaker for both. With an unreachable Redis the
gateway carries on with in-process breakers.

Provider names carry a random suffix: Redis (its keys and its pub/sub channel) is shared with every other test
run on this machine, so fixed names could see, or disturb, someone else's breakers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatewayz.keys.crypto import new_master_key
from tests.conftest import EMU_KEY, GatewayFactory
from tests.databases import DatabaseFactory, postgres_available, require_redis
from tests.emulator import Emulator, Fault
from tests.gateway_server import ADMIN_KEY, migrate
from tests.net import free_port, wait_until

BIN = Path(sys.executable).parent / "gatewayz"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HELLO: Any = [{"role": "user", "content": "hello cluster"}]




class Cluster:
    def __init__(self, urls: list[str], pa: str, pb: str) -> None:
        self.urls, self.pa, self.pb = urls, pa, pb

    def chat(self, url: str, api_key: str) -> httpx.Response:
        return httpx.post(url + "/v1/chat/completions", json={"model": "test/echo", "messages": HELLO},
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=20)

    def breaker(self, url: str, provider: str) -> dict[str, Any]:
        r = httpx.get(f"{url}/circuit-breakers/{provider}", headers=ADMIN, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def cluster(tmp_path: Path, databases: DatabaseFactory, emu_a: Emulator, emu_b: Emulator) -> Iterator[Cluster]:
    redis_url = require_redis()
    db_url = databases.url("postgresql" if postgres_available() is None else "sqlite")
    migrate(db_url)  # once, before both processes start (each would otherwise race to migrate)
    tag = uuid.uuid4().hex[:10]
    pa, pb = f"emu-a-{tag}", f"emu-b-{tag}"
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"""
database_url: "{db_url}"
redis_url: "{redis_url}"
admin_key: {ADMIN_KEY}
encryption_key: "{new_master_key()}"
data_dir: "{tmp_path}"
workers: 1
credits: {{authority: sql}}
routing:
  breaker: {{failure_threshold: 3, cooldown_s: 30}}
providers:
  - {{name: {pa}, type: openai, base_url: "{emu_a.base_url}", api_key: {EMU_KEY}, timeout_s: 5}}
  - {{name: {pb}, type: openai, base_url: "{emu_b.base_url}", api_key: {EMU_KEY}, timeout_s: 5}}
models:
  - id: test/echo
    pricing: {{input: 1, output: 2}}
    context_length: 8192
    max_output_tokens: 100
    providers: [{{provider: {pa}, model: ok-model}}, {{provider: {pb}, model: ok-model}}]
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAYZ_")}
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    for _ in range(2):
        port = free_port()
        procs.append(subprocess.Popen([str(BIN), "serve", "--config", str(cfg), "--port", str(port)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True))
        urls.append(f"http://127.0.0.1:{port}")

    def up(url: str) -> bool:
        try:
            return httpx.get(url + "/health/quick", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        for proc, url in zip(procs, urls, strict=True):
            def ready(u: str = url, p: subprocess.Popen[bytes] = proc) -> bool:
                return up(u) or p.poll() is not None

            if not wait_until(ready, 40, 0.1) or proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.poll() is not None and proc.stdout else ""
                raise RuntimeError(f"gateway at {url} did not start: {out}")
        yield Cluster(urls, pa, pb)
    finally:
        for p in (pa, pb):  # tidy the shared Redis: only this run's keys (never reset-all)
            try:
                httpx.post(f"{urls[0]}/circuit-breakers/{p}/reset", headers=ADMIN, timeout=2)
            except httpx.HTTPError:
                pass
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_breaker_opened_through_one_process_is_open_in_the_other(cluster: Cluster, emu_a: Emulator,
                                                                 emu_b: Emulator) -> None:
    a_url, b_url = cluster.urls
    pa, pb = cluster.pa, cluster.pb
    made = httpx.post(a_url + "/admin/users", headers=ADMIN, json={"email": f"c{uuid.uuid4().hex[:8]}@example.com",
                                                                   "credits": "10"})
    assert made.status_code in (200, 201), made.text
    key = made.json()["api_key"]

    # both processes serve from the first provider while it is healthy (and the key works on both)
    for url in (a_url, b_url):
        r = cluster.chat(url, key)
        assert r.status_code == 200, r.text
        assert r.headers["x-gateway-provider"] == pa
    emu_a.clear()
    emu_b.clear()

    emu_a.set_default_fault(Fault(status=503))
    for i in range(3):  # three failures, all seen by process A
        r = cluster.chat(a_url, key)
        assert r.status_code == 200 and r.headers["x-gateway-provider"] == pb
        assert len(emu_a.requests) == i + 1
    assert wait_until(lambda: cluster.breaker(a_url, pa)["state"] == "open", 3)
    assert wait_until(lambda: cluster.breaker(b_url, pa)["state"] == "open", 3), cluster.breaker(b_url, pa)
    assert cluster.breaker(b_url, pb)["state"] == "closed"

    for _ in range(4):  # process B never saw a failure itself, yet skips the provider
        t0 = time.perf_counter()
        r = cluster.chat(b_url, key)
        assert r.status_code == 200 and r.headers["x-gateway-provider"] == pb
        assert time.perf_counter() - t0 < 1
    assert len(emu_a.requests) == 3
    assert len(emu_b.requests) == 7

    # a reset through B closes the breaker for A as well
    emu_a.set_default_fault(None)
    r = httpx.post(f"{b_url}/circuit-breakers/{pa}/reset", headers=ADMIN, timeout=5)
    assert r.status_code == 200, r.text
    assert wait_until(lambda: cluster.breaker(a_url, pa)["state"] == "closed", 3)
    r = cluster.chat(a_url, key)
    assert r.status_code == 200 and r.headers["x-gateway-provider"] == pa


def test_consecutive_failures_add_up_across_processes(cluster: Cluster, emu_a: Emulator, emu_b: Emulator) -> None:
    """Two failures through A and one through B make three consecutive failures: the breaker opens."""
    a_url, b_url = cluster.urls
    pa, pb = cluster.pa, cluster.pb
    key = httpx.post(a_url + "/admin/users", headers=ADMIN, json={"email": f"d{uuid.uuid4().hex[:8]}@example.com",
                                                                  "credits": "10"}).json()["api_key"]
    emu_a.set_default_fault(Fault(status=503))
    for url in (a_url, a_url):
        assert cluster.chat(url, key).headers["x-gateway-provider"] == pb
    assert wait_until(lambda: cluster.breaker(b_url, pa)["consecutive_failures"] == 2, 3), \
        cluster.breaker(b_url, pa)
    assert cluster.breaker(b_url, pa)["state"] == "closed"
    assert cluster.chat(b_url, key).headers["x-gateway-provider"] == pb
    assert wait_until(lambda: cluster.breaker(a_url, pa)["state"] == "open", 3), cluster.breaker(a_url, pa)
    assert cluster.breaker(b_url, pa)["state"] == "open"
    seen = len(emu_a.requests)
    assert seen == 3
    for url in (a_url, b_url):
        assert cluster.chat(url, key).headers["x-gateway-provider"] == pb
    assert len(emu_a.requests) == seen


def test_unreachable_redis_falls_back_to_in_process_breakers(gateway_factory: GatewayFactory, emu_a: Emulator,
                                                             emu_b: Emulator) -> None:
    import openai

    gw = gateway_factory([emu_a, emu_b], redis_url="redis://127.0.0.1:1/0",
                         routing={"breaker": {"failure_threshold": 3, "cooldown_s": 30}})
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.create_user("10")["api_key"], max_retries=0,
                           timeout=20)

    def provider() -> str:
        raw = client.chat.completions.with_raw_response.create(model="test/echo", messages=HELLO)
        assert raw.parse().choices[0].message.content == "Echo: hello cluster"
        return str(raw.headers["x-gateway-provider"])

    assert provider() == "emu-a"
    emu_a.set_default_fault(Fault(status=503))
    for _ in range(3):
        t0 = time.perf_counter()
        assert provider() == "emu-b"
        assert time.perf_counter() - t0 < 2
    with gw.admin() as admin:
        assert wait_until(lambda: admin.get("/circuit-breakers/emu-a").json()["state"] == "open", 3)
        for _ in range(3):
            assert provider() == "emu-b"
        assert len(emu_a.requests) == 4
        r = admin.post("/circuit-breakers/emu-a/reset")
        assert r.status_code == 200, r.text
        assert admin.get("/circuit-breakers/emu-a").json()["state"] == "closed"
    emu_a.set_default_fault(None)
    assert provider() == "emu-a"
