"""The bundled disposable-domain list is well formed, and a listed domain's subdomains are refused too."""

from __future__ import annotations

import re

from gatewayz.auth.emails import BUNDLED, DisposableDomains, load_domains


def test_bundled_list_is_well_formed() -> None:
    lines = [ln for ln in BUNDLED.read_text().splitlines() if ln and not ln.startswith("#")]
    domains = load_domains()
    assert len(domains) == len(lines) >= 400  # no duplicates
    assert all(re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", d) for d in domains)
    assert not domains & {"gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me",
                          "example.com", "qq.com", "mail.ru", "gmx.de"}


def test_membership_covers_subdomains_and_extras() -> None:
    listed = DisposableDomains(extra=["burner.example"])
    assert "tempmail.com" in listed and "MAILINATOR.COM" in listed and "x.y.yopmail.com" in listed
    assert "burner.example" in listed and "a.burner.example" in listed
    assert "com" not in listed and "notmailinator.example" not in listed and "example.com" not in listed
    assert len(listed) == len(load_domains()) + 1
