"""Run an emulator in the foreground: ``python -m tests.emulator --port 19101 --name a``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .server import Emulator


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--name", default="emulator", help="name used by [[fault@NAME:...]] directives")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: any)")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = Emulator(name=args.name, api_key=args.api_key, host=args.host, port=args.port)
    await emulator.astart()
    print(f"emulator {emulator.name!r} listening on {emulator.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.astop()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
