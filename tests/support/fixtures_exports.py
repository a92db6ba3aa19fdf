"""The export harness as a fixture (a conftest plugin): ``exports``, one in-process worker on
the real broker, store and BC emulator (:mod:`tests.support.exports`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.emulator.fixtures import EmulatorHandle
from tests.support.exports import Exports, open_exports


@pytest.fixture(name="exports")
async def exports_fixture(
    request: pytest.FixtureRequest, amqp_url: str, tmp_path: Path, emulator: EmulatorHandle
) -> AsyncIterator[Exports]:
    """One worker started, the demo config saved; more workers via ``start_worker()``.

    The store is SQLite; parametrize indirectly with ``"postgresql"`` for the shared server.
    ``@pytest.mark.retry_delays(…)`` sets another retry ladder (default 0.2, 0.4, 0.8 s).
    """
    async with open_exports(request, amqp_url, tmp_path, emulator) as harness:
        yield harness
