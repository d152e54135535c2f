"""Runs the real gateway (uvicorn + the app) on a free port in a background thread, for end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import uvicorn

from gatewayz.app import create_app
from gatewayz.container import Container
from gatewayz.settings import Settings
from gatewayz.storage.db import create_engine
from gatewayz.storage.migrate import upgrade

ADMIN_KEY = "test-admin-key-0123456789abcdefghijklmnop"


def migrate(url: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
    asyncio.run(run())


class GatewayServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.container: Container = self.app.state.container
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, loop="asyncio",
                                                     log_level="warning", access_log=False, lifespan="on",
                                                     proxy_headers=False))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""

    def start(self) -> GatewayServer:
        self._thread.start()
        deadline = time.time() + 20
        while not self._server.started:
            if time.time() > deadline or not self._thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        sock = self._server.servers[0].sockets[0]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._loop = self.call_loop()
        return self

    def call_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.servers[0].get_loop()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run a coroutine on the gateway's own event loop (to drain settlements, inspect state)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def drain(self) -> None:
        self.run(self.container.credits.drain())

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    # -- helpers that go through the public HTTP API --

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    def create_user(self, credits: str | float = "10", email: str | None = None) -> dict[str, Any]:
        import uuid
        with self.admin() as client:
            r = client.post("/admin/users", json={"email": email or f"u{uuid.uuid4().hex[:10]}@example.com",
                                                  "credits": str(credits)})
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]

    def balance_nanos(self, api_key: str) -> int:
        self.drain()
        r = httpx.get(self.url + "/user/balance", headers={"Authorization": f"Bearer {api_key}"})
        r.raise_for_status()
        return int(r.json()["balance_nanos"])
