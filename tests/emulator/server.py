"""The emulator core: lifecycle, request log and fault engine.

An :class:`Emulator` is a real aiohttp HTTP server impersonating an upstream LLM
provider.  It serves one or more wire formats (see ``wire.py``; OpenAI by
default), records every request, and misbehaves on demand (see ``faults.py``).

Run it in a background thread (``start``/``stop``, or ``with Emulator() as emu``)
or on the running event loop (``await astart()``/``await astop()``, or
``async with Emulator() as emu``).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from .faults import Fault, FaultSyntaxError, directive_fault, iter_strings
from .openai_format import OpenAIFormat
from .wire import Exchange, Handler, RequestHandler, WireFormat, close_connection

FAULT_KEY = web.RequestKey("emulator_fault", Fault)
_HANG_POLL_S = 0.02
_START_TIMEOUT_S = 10.0
_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by the emulator."""

    method: str
    path: str
    headers: dict[str, str]
    """Request headers, lower-case names."""
    json: Any
    """The parsed JSON body, or None (no body, or not JSON)."""
    fault: Fault | None
    """The fault applied to this request, if any."""
    time: float
    """``time.time()`` when the request arrived."""
    query: dict[str, str] = field(default_factory=dict)
    raw_body: bytes = field(default=b"", repr=False)


def _parse_body(raw: bytes, content_type: str = "") -> tuple[Any, bool]:
    """(parsed JSON or None, whether the body was acceptable); a form (OAuth token requests) becomes a dict."""
    if not raw.strip():
        return None, True
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"))), True
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return None, False


class Emulator:
    """An upstream provider impersonator with fault injection and a request log."""

    def __init__(
        self,
        name: str = "emulator",
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("ok-model",),
        formats: Sequence[WireFormat] | None = None,
    ) -> None:
        self.name = name
        self.api_key = api_key
        self.host = host
        self._port = port
        self._formats: list[WireFormat] = list(formats) if formats else [OpenAIFormat()]
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._queue: list[tuple[str | None, Fault]] = []
        self._default_fault: Fault | None = None
        self._models: list[str] = list(models)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # ----------------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("emulator has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # --------------------------------------------------------------- request log
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._log[-1] if self._log else None

    def clear(self) -> None:
        """Forget the request log and the queued faults (the default fault stays)."""
        with self._lock:
            self._log.clear()
            self._queue.clear()

    def reset(self) -> None:
        """``clear()`` and drop the default fault."""
        with self._lock:
            self._log.clear()
            self._queue.clear()
            self._default_fault = None

    def models(self) -> list[str]:
        """Models this emulator advertises: the configured ones plus every model requested so far."""
        with self._lock:
            return list(self._models)

    # -------------------------------------------------------------------- faults
    def push_fault(self, fault: Fault, model: str | None = None) -> None:
        """Queue ``fault`` for the next request (whose model is ``model``, if given). FIFO, used once."""
        with self._lock:
            self._queue.append((model, fault))

    def set_default_fault(self, fault: Fault | None) -> None:
        """Apply ``fault`` to every request from now on (None to stop)."""
        with self._lock:
            self._default_fault = fault

    def _select_fault(self, body: Any, raw: bytes, model: str | None) -> Fault | None:
        """Directive for this emulator > first matching queued fault > default fault."""
        text = "\n".join(iter_strings(body)) if body is not None else raw.decode("utf-8", "replace")
        directive = directive_fault(text, self.name)
        if directive is not None:
            return directive
        with self._lock:
            for index, (wanted, fault) in enumerate(self._queue):
                if wanted is None or wanted == model:
                    del self._queue[index]
                    return fault
            return self._default_fault

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Emulator:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        if self._runner is not None or self._thread is not None:
            raise RuntimeError("emulator already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_loop, args=(loop,), name=f"emulator-{self.name}", daemon=True)
        thread.start()
        started = False
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(_START_TIMEOUT_S)
            started = True
        finally:
            if not started:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_START_TIMEOUT_S)
        self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start` (hanging requests are released)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            if self._runner is not None:
                raise RuntimeError("emulator was started with astart(); use astop()")
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT_S)
        self._loop, self._thread = None, None

    async def astart(self) -> Emulator:
        """Serve on the running event loop; returns once listening."""
        if self._runner is not None:
            raise RuntimeError("emulator already running")
        await self._serve()
        return self

    async def astop(self) -> None:
        """Stop a server started with :meth:`astart`."""
        if self._thread is not None:
            raise RuntimeError("emulator was started with start(); use stop()")
        await self._shutdown()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Emulator:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    async def _serve(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._port = sock.getsockname()[1]
        self._stopping = False
        self._runner = runner

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        await runner.cleanup()

    # ------------------------------------------------------------------- serving
    def build_app(self) -> web.Application:
        """The aiohttp application (every format's routes, then a 404 catch-all)."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        for fmt in self._formats:
            for route in fmt.routes():
                app.router.add_route(route.method, route.path, self._endpoint(fmt, route.handler))
        fallback = self._formats[0]
        app.router.add_route("*", "/{tail:.*}", self._endpoint(fallback, fallback.not_found))
        app.on_response_prepare.append(self._decorate_response)
        return app

    def _endpoint(self, fmt: WireFormat, handler: Handler) -> RequestHandler:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(request, fmt, handler)

        return endpoint

    async def _dispatch(self, request: web.Request, fmt: WireFormat, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        if request.content_type == "multipart/form-data":
            body, body_ok = None, True  # the format's handler reads the form itself
        else:
            body, body_ok = _parse_body(raw, request.content_type)
        model = fmt.model_of(request, body)
        try:
            fault = self._select_fault(body, raw, model)
        except FaultSyntaxError as exc:
            self._record(request, raw, body, None)
            return fmt.error(400, f"emulator fault directive error: {exc}")
        self._record(request, raw, body, fault)
        self._note_model(model)
        if fault is not None:
            request[FAULT_KEY] = fault
            answer = await self._apply_fault(request, fmt, fault, fmt.wants_stream(request, body))
            if answer is not None:
                return answer
        if self.api_key is not None and not fmt.authorized(request, self.api_key):
            return fmt.error(401, "Incorrect API key provided.", "invalid_api_key")
        if not body_ok:
            return fmt.error(400, "We could not parse the JSON body of your request.")
        return await handler(Exchange(request, body, fault or Fault(), self))

    async def _apply_fault(
        self, request: web.Request, fmt: WireFormat, fault: Fault, stream: bool
    ) -> web.StreamResponse | None:
        """Apply the request-level part of ``fault``; a response ends the request early."""
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000.0)
        if fault.hang:
            await self._hang(request)
            return web.Response()
        if fault.drop_after_chunks is not None and not stream:
            close_connection(request)
            return web.Response()
        status = fault.status if fault.status is not None else 200
        if fault.raw_body is not None:
            return web.Response(status=status, body=fault.raw_body, content_type="application/json")
        if fault.body is not None:
            return web.Response(status=status, body=orjson.dumps(fault.body), content_type="application/json")
        if fault.is_error() and fault.status is not None:
            message = fault.error_message or f"Emulated upstream error (HTTP {fault.status})."
            return fmt.error(fault.status, message, fault.error_code)
        return None

    async def _hang(self, request: web.Request) -> None:
        """Wait until the client goes away or the server stops, then drop the connection."""
        while not self._stopping:
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            await asyncio.sleep(_HANG_POLL_S)
        close_connection(request)

    async def _decorate_response(self, request: web.Request, response: web.StreamResponse) -> None:
        fault = request.get(FAULT_KEY)
        if fault is not None:
            response.headers.update(fault.retry_headers())
        response.headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
        response.headers["x-emulator"] = self.name

    def _record(self, request: web.Request, raw: bytes, body: Any, fault: Fault | None) -> None:
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            json=body,
            fault=fault,
            time=time.time(),
            query=dict(request.query),
            raw_body=raw,
        )
        with self._lock:
            self._log.append(entry)

    def _note_model(self, model: str | None) -> None:
        if not model:
            return
        with self._lock:
            if model not in self._models:
                self._models.append(model)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
