"""Circuit breakers: CLOSED -> OPEN after N consecutive failures -> HALF_OPEN after a cooldown -> CLOSED
after M successes (or back to OPEN on a failure).

One state machine (`step`) serves both stores: in memory (one process) and Redis (every worker and
instance shares the state; a Lua script applies the same rules atomically). The hot path only reads a
local snapshot: `allows()` is a dict lookup, and a success while nothing failed costs no I/O."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]
Outcome = Literal["success", "failure"]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    cooldown_s: float = 60.0
    half_open_successes: int = 1


@dataclass(slots=True)
class Breaker:
    state: State = "closed"
    failures: int = 0          # consecutive, while closed
    successes: int = 0         # while half-open
    opened_at: float = 0.0     # wall clock, shared across machines
    transitions: dict[str, int] = field(default_factory=dict)

    def effective(self, policy: BreakerPolicy, now: float) -> State:
        """OPEN becomes HALF_OPEN by itself once the cooldown has passed."""
        if self.state == "open" and now - self.opened_at >= policy.cooldown_s:
            return "half_open"
        return self.state

    def retry_after(self, policy: BreakerPolicy, now: float) -> float:
        return max(self.opened_at + policy.cooldown_s - now, 0.0)


def step(b: Breaker, outcome: Outcome, policy: BreakerPolicy, now: float) -> tuple[State, State]:
    """Apply one outcome; returns (state before, state after)."""
    before = b.effective(policy, now)
    if before == "open":
        return before, before  # a straggler finishing after the breaker opened changes nothing
    if outcome == "failure":
        if before == "half_open":
            b.state, b.opened_at, b.successes = "open", now, 0
        else:
            b.failures += 1
            if b.failures >= policy.failure_threshold:
                b.state, b.opened_at, b.failures = "open", now, 0
    elif before == "half_open":
        b.successes += 1
        b.state = "half_open"
        if b.successes >= policy.half_open_successes:
            b.state, b.successes, b.failures = "closed", 0, 0
    else:
        b.failures = 0
    return before, b.state


def now() -> float:
    return time.time()
