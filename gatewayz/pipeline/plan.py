"""Stage: resolve the model (aliases, variants, fallback `models`) and order the providers to try."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatewayz.errors import InvalidRequest
from gatewayz.pipeline.context import RequestContext
from gatewayz.routing.planner import fallback_models, parse_prefs

if TYPE_CHECKING:
    from gatewayz.container import Container


def _session(ctx: RequestContext, scope: dict[str, Any] | Any) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-session-id":
            return str(value.decode("latin-1"))[:256]
    sid = ctx.body.get("session_id")
    return sid[:256] if isinstance(sid, str) else None


def plan(ctx: RequestContext, c: Container, scope: Any) -> None:
    if ctx.requested_model.startswith("router:"):
        ctx.entry = c.routers.choose(ctx.requested_model, ctx.body).entry
    else:
        ctx.entry = c.catalog.resolve(ctx.requested_model)
    if ctx.operation is None and ctx.entry.mode != "chat":
        raise InvalidRequest(f"{ctx.entry.id} is a {ctx.entry.mode} model; chat endpoints serve chat models.",
                             param="model", code="wrong_model_type")
    allowed = ctx.principal.restrictions if ctx.principal else None
    if allowed is not None:
        allowed.check_model(ctx.entry.id, ctx.requested_model, *ctx.entry.aliases)
    prefs = parse_prefs(ctx.body)
    fallbacks = fallback_models(ctx.body, c.catalog, ctx.entry)
    if allowed is not None and allowed.allowed_models is not None:
        fallbacks = [f for f in fallbacks if f.id in allowed.allowed_models]
    ctx.session = _session(ctx, scope) if ctx.entry.routing == "weighted" else None
    ctx.candidates = c.planner.plan(ctx.entry, ctx.requested_model, ctx.body, fallbacks, prefs, ctx.session)
