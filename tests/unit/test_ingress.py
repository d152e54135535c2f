"""The client address behind proxies, and velocity mode's state machine (the rules its Redis script mirrors)."""

from __future__ import annotations

from typing import Any

import pytest

from gatewayz.api.client_ip import TrustedProxies, parse_address
from gatewayz.limits.velocity import VelocityState, step
from gatewayz.settings import Settings, VelocityConfig


def _scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    return {"client": (peer, 1234) if peer else None,
            "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded]}


@pytest.mark.parametrize(("text", "expected"), [
    ("1.2.3.4", "1.2.3.4"), (" 1.2.3.4 ", "1.2.3.4"), ("1.2.3.4:8080", "1.2.3.4"), ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"), ("[2001:db8::1]:443", "2001:db8::1"), ("::ffff:10.0.0.1", "10.0.0.1"),
    ("unknown", None), ("", None), ("1.2.3.999", None), ("_hidden", None)])
def test_parse_address(text: str, expected: str | None) -> None:
    got = parse_address(text)
    assert (str(got) if got is not None else None) == expected


def test_client_address() -> None:
    none = TrustedProxies([])
    assert none.client_ip(_scope("198.51.100.1", "203.0.113.5")) == "198.51.100.1"  # nobody is trusted
    assert none.client_ip(_scope(None)) == "unknown"
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])
    assert proxies.client_ip(_scope("198.51.100.1", "203.0.113.5")) == "198.51.100.1"  # untrusted peer
    assert proxies.client_ip(_scope("10.1.1.1", "203.0.113.5")) == "203.0.113.5"
    assert proxies.client_ip(_scope("10.1.1.1", "6.6.6.6, 203.0.113.5, 10.2.2.2")) == "203.0.113.5"
    assert proxies.client_ip(_scope("10.1.1.1", "6.6.6.6, 203.0.113.5", "10.2.2.2")) == "203.0.113.5"
    assert proxies.client_ip(_scope("fd00::1", "2001:db8::7")) == "2001:db8::7"
    assert proxies.client_ip(_scope("10.1.1.1", "10.9.9.9, 127.0.0.1")) == "10.9.9.9"  # all trusted: leftmost
    assert proxies.client_ip(_scope("10.1.1.1", "junk, 10.9.9.9")) == "10.9.9.9"
    assert proxies.client_ip(_scope("10.1.1.1")) == "10.1.1.1"
    scope = _scope("10.1.1.1", "203.0.113.5")
    assert proxies.client_ip(scope) == "203.0.113.5" and scope["gw.client_ip"] == "203.0.113.5"  # once a request


def test_trusted_proxies_are_validated() -> None:
    assert Settings(trusted_proxies=["10.0.0.1/8", " ::1 "]).trusted_proxies == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match="not an IP address or CIDR range"):
        Settings(trusted_proxies=["proxy.internal"])


def test_velocity_state_machine() -> None:
    cfg = VelocityConfig(error_rate_threshold=0.25, min_requests=10, cooldown_s=180)
    calm = VelocityState()
    assert not step(calm, 9, 9, 0.0, cfg).active          # too few requests to judge
    assert not step(calm, 100, 25, 0.0, cfg).active       # exactly the threshold is not above it
    on = step(calm, 100, 26, 5.0, cfg)
    assert on.active and on.since == 5.0 and on.calm_since is None
    assert step(on, 100, 50, 60.0, cfg) == VelocityState(True, 5.0, None, 100, 50)
    cooling = step(on, 100, 10, 70.0, cfg)
    assert cooling.active and cooling.calm_since == 70.0
    assert step(cooling, 100, 10, 249.0, cfg).active      # 179 s below the threshold
    relapse = step(cooling, 100, 40, 200.0, cfg)          # above again: the cooldown starts over
    assert relapse.active and relapse.calm_since is None and relapse.since == 5.0
    off = step(cooling, 100, 10, 250.0, cfg)
    assert not off.active and off.since == 250.0 and off.calm_since is None
