"""`gatewayz serve | migrate | users create | keys create | keys new-secret`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from gatewayz.settings import ConfigError, Settings, load_settings, worker_environment


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "workers")}
    return load_settings(getattr(args, "config", None), **overrides)


async def _with_container(settings: Settings, fn: Callable[[Any], Awaitable[None]]) -> None:
    from gatewayz.container import Container
    from gatewayz.storage.migrate import upgrade

    container = Container(settings)
    try:
        await upgrade(container.db)
        await fn(container)
    finally:
        await container.stop()


def cmd_migrate(args: argparse.Namespace) -> None:
    async def run(_: Any) -> None:
        print("database is at the newest migration")
    asyncio.run(_with_container(_settings(args), run))


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from gatewayz.observability.logging import configure_logging
    from gatewayz.observability.multiproc import reset_multiprocess_dir

    settings = _settings(args)
    if settings.workers > 1 and settings.metrics_dir is None:
        # Every worker writes its metrics here and /metrics, on any worker, adds them all up.
        settings = settings.model_copy(update={"metrics_dir": settings.data_dir / "metrics"})
    if settings.metrics_dir is not None:
        reset_multiprocess_dir(str(settings.metrics_dir))
    asyncio.run(_with_container(settings, lambda _: asyncio.sleep(0)))  # migrate once, before any worker
    configure_logging(settings.log_level, settings.log_json)
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "loop": "uvloop", "http": "httptools",
                              "access_log": False, "log_level": settings.log_level, "log_config": None,
                              # SIGTERM: in-flight requests and streams finish within the grace, then the
                              # lifespan's shutdown writes every pending settlement.
                              "timeout_graceful_shutdown": settings.shutdown_grace_s,
                              # The client address is the gateway's decision (settings.trusted_proxies), not uvicorn's.
                              "proxy_headers": False}
    if settings.workers == 1:
        from gatewayz.app import create_app

        # uvicorn re-raises SIGTERM once its graceful shutdown is over; that shutdown is the normal way to stop
        # (everything in flight finished, every settlement written), so the exit status is 0.
        signal.signal(signal.SIGTERM, _stopped)
        uvicorn.run(create_app(settings), **common)
    else:
        # Workers import the app themselves: hand them the same configuration through the environment.
        worker_environment(getattr(args, "config", None), settings)
        uvicorn.run("gatewayz.app:app_factory", factory=True, workers=settings.workers, **common)


def _stopped(signum: int, frame: object) -> None:
    sys.exit(0)


def _usd(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {value!r}") from None
    if amount < 0 or amount != amount.quantize(Decimal("0.000000001")):
        raise argparse.ArgumentTypeError("credits are a non-negative USD amount with at most 9 decimals")
    return amount


def cmd_users_create(args: argparse.Namespace) -> None:
    from gatewayz.billing.money import usd_to_nanos
    from gatewayz.users.store import EmailTaken

    async def run(c: Any) -> None:
        try:
            user = await c.users.create(args.email.lower(), args.role, usd_to_nanos(args.credits), actor="cli")
        except EmailTaken:
            sys.exit(f"error: a user with e-mail {args.email} already exists")
        key = await c.keys.create(user.id, "default")
        print(f"user_id: {user.id}\napi_key: {key.api_key}")
    asyncio.run(_with_container(_settings(args), run))


def cmd_keys_create(args: argparse.Namespace) -> None:
    async def run(c: Any) -> None:
        if await c.users.get(args.user) is None:
            sys.exit(f"error: no user {args.user}")
        key = await c.keys.create(args.user, args.name)
        print(f"key_id: {key.id}\napi_key: {key.api_key}")
    asyncio.run(_with_container(_settings(args), run))


def cmd_new_secret(_: argparse.Namespace) -> None:
    from gatewayz.keys.crypto import new_master_key
    print(new_master_key())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatewayz", description="GatewayZ inference gateway")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", help="YAML config file (default: $GATEWAYZ_CONFIG)")
        return sp

    serve = with_config(sub.add_parser("serve", help="migrate the database and serve HTTP"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(fn=cmd_serve)
    with_config(sub.add_parser("migrate", help="apply database migrations")).set_defaults(fn=cmd_migrate)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    uc = with_config(users.add_parser("create", help="create a user and print its id and API key"))
    uc.add_argument("--email", required=True)
    uc.add_argument("--credits", type=_usd, default=Decimal(0), help="opening credits in USD")
    uc.add_argument("--role", choices=["admin", "developer", "support", "user"], default="user")
    uc.set_defaults(fn=cmd_users_create)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    kc = with_config(keys.add_parser("create", help="create an API key for a user and print it"))
    kc.add_argument("--user", type=int, required=True)
    kc.add_argument("--name", default="default")
    kc.set_defaults(fn=cmd_keys_create)
    keys.add_parser("new-secret", help="print a new encryption key for GATEWAYZ_ENCRYPTION_KEY").set_defaults(
        fn=cmd_new_secret)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    except ValueError as exc:  # a bad encryption key and the like: say what, without a trace
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
