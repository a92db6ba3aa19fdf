"""The SMTP fixture (a conftest plugin): ``smtp``, a real SMTP server on a free local port that
keeps what it accepts (:class:`tests.support.smtp.SmtpSink`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.smtp import SmtpSink


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    await sink.start()
    yield sink
    await sink.stop()
