"""Pure ASGI middleware: the request id on every response, and no stack trace ever leaves the process."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable

from gatewayz.api.asgi import Message, Receive, Scope, Send, send_error
from gatewayz.errors import GatewayError, InvalidRequest

log = logging.getLogger("gatewayz.http")
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class _RequestIds:
    """Unique ids without a syscall per request: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = "req_" + os.urandom(6).hex()
        self._next = itertools.count(1).__next__

    def __call__(self) -> str:
        return f"{self._prefix}{self._next():010x}"


new_request_id = _RequestIds()


Observe = Callable[[str, str, int, float], None]  # route template, method, status, seconds
OnException = Callable[[BaseException, str | None, str], None]  # exception, route, request id


class RequestIdMiddleware:
    """Also reports every HTTP exchange (route template, method, status, duration) to `observe`, and every
    unhandled exception to `on_exception`."""

    def __init__(self, app: object, observe: Observe | None = None, on_exception: OnException | None = None) -> None:
        self.app = app
        self.observe = observe
        self.on_exception = on_exception

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
                break
        if given is not None and not _VALID_ID.match(given):
            await send_error(_WithId(send, new_request_id()), InvalidRequest(
                "X-Request-ID must be 1 to 128 characters of letters, digits and . _ : -",
                code="invalid_request_id"))
            return
        rid = given.decode() if given is not None else new_request_id()
        scope["gw.request_id"] = rid
        scope["gw.client_request_id"] = given is not None
        send_with_id = _WithId(send, rid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)  # type: ignore[operator]
        except Exception as exc:
            log.exception("unhandled error in request %s", rid)
            if self.on_exception is not None:
                route = scope.get("route")
                self.on_exception(exc, getattr(route, "path", None) or scope.get("gw.route") or scope["path"], rid)
            if not send_with_id.started:
                await send_error(send_with_id, GatewayError("Internal error; quote the X-Request-ID if you "
                                                            "report it."))
        if self.observe is not None:
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get("gw.route") or "unmatched"
            self.observe(template, scope["method"], send_with_id.status, time.perf_counter() - started)


class _WithId:
    """Adds X-Request-ID to the response start and remembers whether the response has started."""

    __slots__ = ("_send", "_header", "started", "status")

    def __init__(self, send: Send, rid: str) -> None:
        self._send = send
        self._header = (b"x-request-id", rid.encode())
        self.started = False
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self._header]
        await self._send(message)
