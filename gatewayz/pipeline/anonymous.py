"""Layer 3: chat completions without any credential, for the free models the operator lists.

An admitted request runs the normal stages as an anonymous principal (no user, no key) whose allowed models are
exactly the listed ones, so fallbacks outside the list are dropped as for a restricted key. It takes no credit
hold and settles nothing: there is no account to charge, the model is free, and no usage record is written
(usage records belong to a user); the Prometheus request, token and latency metrics count it like any other.
Its limits are per client address (pipeline.limit: layers 1 and 3). Anything else without a credential stays
a 401."""

from __future__ import annotations

from gatewayz.catalog.service import Catalog
from gatewayz.errors import GatewayError, ModelNotFound
from gatewayz.keys.restrictions import Restrictions
from gatewayz.keys.service import ANONYMOUS_ROLE, Principal
from gatewayz.pipeline.context import RequestContext
from gatewayz.settings import AnonymousConfig, ConfigError


class AnonymousAccess:
    def __init__(self, cfg: AnonymousConfig, catalog: Catalog) -> None:
        self.enabled = cfg.enabled and bool(cfg.models)
        self._catalog = catalog
        ids: set[str] = set()
        for name in cfg.models:
            try:
                entry = catalog.resolve(name)
            except ModelNotFound:
                raise ConfigError(f"anonymous.models: {name!r} is not a model of the catalog") from None
            if not entry.free:
                raise ConfigError(f"anonymous.models: {name!r} is not a free model (`free: true`)")
            ids.add(entry.id)
        self.models = frozenset(ids)
        only = Restrictions(allowed_models=self.models, scopes=frozenset({"inference"}))
        self.principal = Principal(user_id=None, key_id=None, role=ANONYMOUS_ROLE, restrictions=only)

    def admit(self, ctx: RequestContext) -> bool:
        """Whether this parsed request, which came without a credential, may be served anonymously."""
        if not self.enabled or ctx.requested_model.startswith("router:"):
            return False
        try:
            entry = self._catalog.resolve(ctx.requested_model)
        except GatewayError:
            return False
        if entry.id not in self.models:
            return False
        ctx.principal = self.principal
        return True
