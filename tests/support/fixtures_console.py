"""Console fixtures (a conftest plugin): ``worker``, a real worker with the consume and api
roles, and ``browser``, an HTTP client signed in like a browser (:mod:`tests.support.console`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.emulator.fixtures import EmulatorHandle
from tests.support.console import Browser, ConsoleWorker, console_worker


@pytest.fixture
async def worker(
    tmp_path: Path, emulator: EmulatorHandle, amqp_url: str
) -> AsyncIterator[ConsoleWorker]:
    async for w in console_worker(tmp_path, emulator, amqp_url):
        yield w


@pytest.fixture
async def browser(worker: ConsoleWorker) -> AsyncIterator[Browser]:
    b = Browser(worker.url)
    try:
        yield b
    finally:
        await b.close()
