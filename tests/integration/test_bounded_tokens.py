"""The msal applications of every organization share one HTTP session to Entra (one
connection pool and TLS context, not one per organization), and it keeps no cookies."""

from __future__ import annotations

from pydantic import SecretStr

from tests.emulator.fixtures import EmulatorHandle
from worker.bc.auth import TokenProvider


async def test_every_msal_app_shares_one_session_that_keeps_no_cookies(
    emulator: EmulatorHandle,
) -> None:
    tokens = TokenProvider(emulator.url, ca_file=emulator.ca_file)
    try:
        by_domain = await tokens.token(
            emulator.tenant_domain, emulator.client_id, SecretStr(emulator.client_secret)
        )
        by_id = await tokens.token(
            emulator.tenant_id, emulator.client_id, SecretStr(emulator.client_secret)
        )
        assert by_domain and by_id
        apps = [entry.app for entry in tokens._entries.values()]
        assert len(apps) == 2
        session = tokens._shared_session()
        assert all(app is not None and app.http_client.http_client is session for app in apps)
        assert len(session.cookies) == 0
    finally:
        tokens.close()
