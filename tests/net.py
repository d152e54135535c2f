"""Small helpers for tests that run servers: a free local port, and waiting for a condition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """True as soon as `check()` is; False if it still is not after `timeout_s`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if check():
            return True
        time.sleep(step_s)
    return check()
