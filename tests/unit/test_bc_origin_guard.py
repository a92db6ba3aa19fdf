"""The BC token only ever goes to BC's own origin, whatever URL a caller or nextLink hands in."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from worker.bc.auth import TokenProvider
from worker.bc.http import Principal, Transport

BASE = "https://bc.example:8443/v2.0"
PRINCIPAL = Principal("contoso.onmicrosoft.com", "app", SecretStr("not-used-secret"))


@pytest.mark.parametrize(
    "url",
    [
        "https://bc.example.evil.test:8443/v2.0/companies",
        "https://bc.example.evil.test:8443/v2.0/companies",
        "https://bc.example/v2.0/companies",  # other port
        "http://bc.example:8443/v2.0/companies",  # other scheme
        "https://evil.test/v2.0/companies",
    ],
)
async def test_foreign_urls_are_refused_before_any_token_is_fetched(url: str) -> None:
    transport = Transport(base_url=BASE, tokens=TokenProvider("https://login.example"))
    with pytest.raises(ValueError, match="another host"):
        await transport.request(PRINCIPAL, "GET", url, resource="companies")
    await transport.close()
