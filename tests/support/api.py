"""The admin API over real HTTP: one call with its JSON answer, and a wait until a URL answers."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support.wait import wait_for


async def call(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def wait_ready(url: str, timeout: float = 60) -> None:
    """Wait until ``url`` answers 200 (a server still starting refuses the connection)."""
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            try:
                async with session.get(url) as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(ready, timeout, 0.2)
