"""Sentry error reports, when `sentry_dsn` is set (needs the `sentry` extra; imported only then).

Unexpected exceptions (the ones RequestIdMiddleware turns into a 500) are reported with the request id and
the trace id as tags. Nothing of a request's content is sent: no SDK integration that reads requests is
enabled, local variables are not collected, and `scrub` (the before_send hook) drops request bodies,
headers, cookies and user data and masks anything that looks like a credential in what remains. With
`sentry_traces_sample_rate` > 0 each inference request is also a Sentry transaction, sampled at that rate."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from gatewayz import __version__
from gatewayz.observability.logging import mask_secrets
from gatewayz.observability.tracing import InferenceMiddleware, ResponseWatch
from gatewayz.settings import ConfigError, Settings

if TYPE_CHECKING:
    from gatewayz.api.asgi import Endpoint, Receive, Scope, Send

_REQUEST_KEEP = ("url", "method")


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items() if k != "vars"}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def scrub(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """before_send / before_send_transaction: keep only the request's method and URL (no body, headers,
    cookies, query string), drop user data and stack-frame variables, mask credentials everywhere."""
    request = event.get("request")
    if isinstance(request, dict):
        event["request"] = {k: request[k] for k in _REQUEST_KEEP if k in request}
    event.pop("user", None)
    cleaned: dict[str, Any] = _masked(event)
    return cleaned


class Sentry:
    def __init__(self, dsn: str, environment: str, traces_sample_rate: float) -> None:
        import sentry_sdk

        self._sdk = sentry_sdk
        self.environment = environment
        self.traces_sample_rate = traces_sample_rate
        sentry_sdk.init(dsn=dsn, environment=environment, release=f"gatewayz@{__version__}",
                        traces_sample_rate=traces_sample_rate or None,
                        default_integrations=False, auto_enabling_integrations=False,
                        include_local_variables=False, max_request_body_size="never", auto_session_tracking=False,
                        send_client_reports=False, before_send=cast(Any, scrub),
                        before_send_transaction=cast(Any, scrub))
        self._client = sentry_sdk.get_client()

    def capture(self, exc: BaseException, request_id: str, trace_id: str | None) -> None:
        """Report an unexpected exception of one request (in the background: this never blocks)."""
        with self._sdk.new_scope() as scope:
            scope.set_tag("request_id", request_id)
            if trace_id:
                scope.set_tag("trace_id", trace_id)
            scope.capture_exception(exc)

    def wrap(self, app: Endpoint, paths: Collection[str]) -> Endpoint:
        """With a traces sample rate: a transaction around every request to one of `paths`."""
        if not self.traces_sample_rate:
            return app
        return Transactions(app, self._sdk, paths)

    def flush(self, timeout_s: float = 5.0) -> None:
        self._client.flush(timeout=timeout_s)

    def close(self) -> None:
        """Send what is queued and stop (blocking: call it off the event loop)."""
        if self._sdk.get_client() is self._client:
            self._client.close(timeout=5)
            self._sdk.get_global_scope().set_client(None)

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "environment": self.environment, "traces_sample_rate": self.traces_sample_rate}


class Transactions(InferenceMiddleware):
    """One Sentry transaction per inference request, in its own scope, tagged with the request id."""

    def __init__(self, app: Endpoint, sdk: Any, paths: Collection[str]) -> None:
        super().__init__(app, paths)
        self.sdk = sdk

    async def observe(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = ResponseWatch(send)
        with self.sdk.isolation_scope(), self.sdk.start_transaction(
                op="http.server", name=f"{scope['method']} {scope['path']}", source="route") as transaction:
            try:
                await self.app(scope, receive, watch)
            finally:
                transaction.set_http_status(watch.status)
                if scope.get("gw.request_id"):
                    transaction.set_tag("request_id", scope["gw.request_id"])


class SentryUnavailable(ConfigError):
    """sentry_dsn is set but sentry-sdk is not installed."""


def make_sentry(settings: Settings) -> Sentry | None:
    if not settings.sentry_dsn:
        return None
    try:
        import sentry_sdk  # noqa: F401
    except ImportError:
        raise SentryUnavailable("sentry_dsn is set but sentry-sdk is not installed: pip install 'gatewayz[sentry]'") \
            from None
    return Sentry(settings.sentry_dsn, settings.sentry_environment, settings.sentry_traces_sample_rate)
