"""A local stand-in for the parts of Stripe's API the gateway calls (Checkout Sessions, subscriptions), answering
with JSON shaped like Stripe's objects, and webhook payloads signed with Stripe's scheme."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from typing import Any

from aiohttp import web

SECRET_KEY = "sk_test_gatewayz"
WEBHOOK_SECRET = "whsec_test_gatewayz"


def sign(payload: str, secret: str = WEBHOOK_SECRET, t: int | None = None) -> str:
    """Stripe-Signature: t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<payload>") in hex."""
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


_ids = itertools.count(1)


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> str:
    return json.dumps({"id": event_id or f"evt_{next(_ids)}_{time.time_ns()}", "object": "event",
                       "type": event_type, "api_version": "2025-01-01", "created": int(time.time()),
                       "livemode": False, "data": {"object": obj}})


class StripeStub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []   # (method, path, form fields)
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def subscription(self, sub_id: str, price: str, user_id: int, status: str = "active") -> dict[str, Any]:
        sub = {"id": sub_id, "object": "subscription", "customer": "cus_1", "status": status,
               "metadata": {"user_id": str(user_id)},
               "items": {"object": "list", "data": [{"id": f"si_{sub_id}", "object": "subscription_item",
                                                     "price": {"id": price, "object": "price"}}]}}
        self.subscriptions[sub_id] = sub
        return sub

    async def _handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((request.method, request.path, form))
        if request.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return web.json_response({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
                                     status=401)
        path = request.path
        if path == "/v1/checkout/sessions" and request.method == "POST":
            sid = f"cs_test_{next(_ids)}"
            meta = {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}
            return web.json_response({"id": sid, "object": "checkout.session", "mode": form.get("mode"),
                                      "url": f"https://checkout.stripe.test/c/pay/{sid}", "metadata": meta,
                                      "client_reference_id": form.get("client_reference_id"),
                                      "payment_status": "unpaid", "status": "open"})
        if path.startswith("/v1/subscriptions/"):
            sub = self.subscriptions.get(path.rsplit("/", 1)[1])
            if sub is None:
                return web.json_response({"error": {"type": "invalid_request_error", "message": "No such sub"}},
                                         status=404)
            if request.method == "POST":
                if "items[0][price]" in form:
                    sub["items"]["data"][0]["price"] = {"id": form["items[0][price]"], "object": "price"}
                sub["metadata"].update({k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")})
            elif request.method == "DELETE":
                sub["status"] = "canceled"
            return web.json_response(sub)
        return web.json_response({"error": {"type": "invalid_request_error", "message": "unknown"}}, status=404)

    def __enter__(self) -> StripeStub:
        self._thread.start()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)

        async def start() -> str:
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}"
        self.url = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
