"""Runs a non-chat operation through the same stages as chat: authenticate, limit, plan, hold, dispatch with
failover, settle the exact cost, record. Answers pass through as the provider sent them, with `usage.cost`
added to JSON answers and the cost in `X-Gateway-Cost` on every answer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from gatewayz.api.inference import meta_headers, record_done
from gatewayz.billing.money import nanos_to_json, nanos_to_usd
from gatewayz.error_monitor.events import upstream_message
from gatewayz.errors import AuthenticationFailed, GatewayError, InvalidRequest, RateLimited, UpstreamResponse
from gatewayz.media.operations import Operation
from gatewayz.observability.logging import log_request_content
from gatewayz.observability.tracing import trace_of
from gatewayz.pipeline.authenticate import authenticate
from gatewayz.pipeline.context import RequestContext
from gatewayz.pipeline.limit import complete_refusal
from gatewayz.pipeline.plan import plan
from gatewayz.pipeline.reserve import reserve
from gatewayz.pipeline.settle import finish, settle
from gatewayz.providers.adapter import Form
from gatewayz.providers.engine import RawReply

if TYPE_CHECKING:
    from gatewayz.container import Container

log = logging.getLogger("gatewayz.media")


async def authenticated(request: Request, c: Container, op: Operation) -> RequestContext:
    """First of all, who is calling (nothing of the body is read before that)."""
    scope = request.scope
    ctx = RequestContext(request_id=scope["gw.request_id"], client_request_id=scope["gw.client_request_id"],
                         endpoint=op.name, operation=op.path, trace=trace_of(scope))
    ip = c.proxies.client_ip(scope)
    with ctx.trace.stage("authenticate", ctx):
        try:
            await authenticate(ctx, dict(scope["headers"]), c.keys, ip, c.allowlist)
        except AuthenticationFailed:
            await c.limits.unauthenticated(ip)
            raise
    return ctx


async def run_operation(request: Request, c: Container, op: Operation, ctx: RequestContext, body: dict[str, Any],
                        raw: bytes, form: Form | None = None) -> Response:
    ctx.body, ctx.raw, ctx.form = body, raw, form
    c.metrics.in_flight(ctx.endpoint, 1)
    try:
        return await _serve(request, c, op, ctx)
    except GatewayError as exc:
        ctx.status, ctx.error_code, ctx.error_message = exc.status, exc.code, exc.message
        if isinstance(exc, RateLimited):
            c.metrics.rate_limited(str(exc.extra.get("reason", "upstream")))
            complete_refusal(exc, ctx.rate, c.limits.velocity.mode)
        raise
    finally:
        if ctx.hold is not None and not ctx.settled:
            ctx.status, ctx.usage = 500, None  # an unexpected error: release the hold
            settle(ctx, c.credits)
        record_done(ctx, c)


async def _serve(request: Request, c: Container, op: Operation, ctx: RequestContext) -> Response:
    model = ctx.body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a string.", param="model", code="missing_model")
    ctx.requested_model = model
    if c.settings.log_prompts:
        log_request_content(log, ctx.request_id, model, ctx.body)
    with ctx.trace.stage("rate_limits", ctx):
        ctx.rate = await c.limits.check(ctx)
    with ctx.trace.stage("plan", ctx):
        plan(ctx, c, request.scope)
        assert ctx.entry is not None
        if ctx.entry.mode != op.mode:
            raise InvalidRequest(f"{ctx.entry.id} is a {ctx.entry.mode} model; this endpoint serves {op.mode} "
                                 "models.", param="model", code="wrong_model_type")
    with ctx.trace.stage("reserve", ctx):
        await reserve(ctx, c.credits, c.ledger, c.plans, op.hold)
    try:
        reply = await c.dispatch(ctx, ctx.started + c.settings.request_deadline_s)
    except (GatewayError, UpstreamResponse) as exc:
        ctx.status, ctx.error_code = exc.status, getattr(exc, "code", None) or "upstream_client_error"
        finish(ctx, c.credits, c.provider_stats)  # a failed request costs nothing
        await c.limits.correct(ctx, ctx.rate)
        if isinstance(exc, UpstreamResponse):
            ctx.error_message = upstream_message(exc.body)
            return Response(exc.body, status_code=exc.status, media_type=exc.content_type, headers=exc.headers)
        raise
    assert isinstance(reply, RawReply)
    ctx.usage = op.usage(ctx, reply.body, reply.content_type)
    if ctx.usage.estimated:
        log.warning("provider %s reported no usage for %s; billing an estimate", ctx.provider, ctx.request_id)
    cost = settle(ctx, c.credits)
    body = _with_cost(reply.body, reply.content_type, cost)
    headers = {k.decode(): v.decode() for k, v in meta_headers(ctx, c.low_balance_nanos)}
    headers["x-gateway-cost"] = f"{nanos_to_usd(cost):f}"
    finish(ctx, c.credits, c.provider_stats)
    await c.limits.correct(ctx, ctx.rate)
    return Response(body, media_type=reply.content_type, headers=headers)


def _with_cost(body: bytes, content_type: str, cost: int) -> bytes:
    """JSON answers report their cost in `usage.cost` (USD), like chat completions."""
    if "json" not in content_type:
        return body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict):
        return body
    usage = data.get("usage")
    data["usage"] = {**(usage if isinstance(usage, dict) else {}), "cost": nanos_to_json(cost)}
    return orjson.dumps(data)
