"""One limit across processes: two `gatewayz serve` processes (one worker each, their own ports) on one database and
one Redis (a private redis-server) enforce layer 1 (failed authentication per address), layer 3 (anonymous per
address) and velocity mode once, whichever process a request reaches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gatewayz.keys.crypto import new_master_key
from tests.conftest import EMU_KEY
from tests.databases import DatabaseFactory
from tests.emulator import Emulator
from tests.gateway_server import ADMIN_KEY, migrate
from tests.net import free_port, wait_until
from tests.redis_server import RedisServer

BIN = Path(sys.executable).parent / "gatewayz"
CHAT = "/v1/chat/completions"
FREE = {"model": "test/free", "messages": [{"role": "user", "content": "hi"}]}
BAD = {"Authorization": "Bearer gw_live_" + "x" * 43}




def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health/quick", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def pair(tmp_path: Path, databases: DatabaseFactory, emu_a: Emulator,
         private_redis: RedisServer) -> Iterator[list[str]]:
    db_url = databases.url("sqlite")
    migrate(db_url)
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"""
database_url: "{db_url}"
redis_url: "{private_redis.url}"
admin_key: {ADMIN_KEY}
encryption_key: "{new_master_key()}"
data_dir: "{tmp_path}"
credits: {{authority: sql}}
trusted_proxies: ["127.0.0.1"]
limits:
  ip_requests_per_minute: 4
  velocity: {{window_s: 5, min_requests: 4, cooldown_s: 2}}
anonymous: {{enabled: true, models: [test/free], requests_per_minute_per_ip: 3}}
providers:
  - {{name: emu-a, type: openai, base_url: "{emu_a.base_url}", api_key: {EMU_KEY}, timeout_s: 5}}
models:
  - id: test/free
    free: true
    pricing: {{input: 0, output: 0}}
    providers: [{{provider: emu-a, model: ok-model}}]
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAYZ_")}
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(subprocess.Popen([str(BIN), "serve", "--config", str(cfg), "--port", str(port)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            if not wait_until(lambda u=url, p=proc: _up(u) or p.poll() is not None, 40) or proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout and proc.poll() is not None else ""
                raise RuntimeError(f"gateway at {url} did not start: {out}")
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_one_limit_across_processes(pair: list[str]) -> None:
    a, b = pair

    def post(url: str, ip: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(url + CHAT, json=FREE, headers={"x-forwarded-for": ip, **(headers or {})}, timeout=20)

    # layer 3: 3 anonymous requests a minute per address, wherever they land
    assert [post(url, "198.51.100.7").status_code for url in (a, b, a)] == [200, 200, 200]
    refused = post(b, "198.51.100.7")
    assert refused.status_code == 429 and refused.headers["x-ratelimit-reason"] == "anonymous_requests"
    assert post(b, "198.51.100.8").status_code == 200  # another address

    # layer 1: 4 failed authentications a minute per address
    assert [post(url, "203.0.113.9", BAD).status_code for url in (b, a, b, a)] == [401, 401, 401, 401]
    refused = post(b, "203.0.113.9", BAD)
    assert refused.status_code == 429 and refused.headers["x-ratelimit-reason"] == "ip"

    # velocity mode: the errors above (failed authentications) went through both processes; both see one state
    def active(url: str) -> bool:
        status = httpx.get(url + "/velocity-mode-status", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        return bool(status["active"] and status["shared"])

    for _ in range(4):
        post(a, "203.0.113.10", BAD)
    assert wait_until(lambda: active(a) and active(b), 5)
    halved = post(b, "198.51.100.20")
    assert halved.status_code == 200 and halved.headers["x-ratelimit-limit-requests"] == "1"
    again = post(a, "198.51.100.20")
    assert again.status_code == 429 and again.headers["x-ratelimit-mode"] == "velocity"
