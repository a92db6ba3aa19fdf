"""Settings for one test: isolated broker names and files, pointed at the BC emulator, with BC
retries short enough for a test (``FAST``)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any, Protocol

from tests.emulator.seed import DEMO
from tests.support.db import KEY
from worker.bc import ClientOptions, RetryPolicy
from worker.config.settings import Settings, load_settings

API_TOKEN = "tok-9c8b7a6f5e4d3c2b"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}

# In-process BC retries short enough for a test: a few quick attempts, never a long wait.
FAST = ClientOptions(
    timeout_s=10, retry=RetryPolicy(max_attempts=4, max_wait_s=10, base_s=0.05, max_backoff_s=0.5)
)
# Verify on save gives up sooner: an admin waits for the answer.
FAST_VERIFY = dataclasses.replace(
    FAST,
    token_timeout_s=5,
    retry=RetryPolicy(max_attempts=2, max_wait_s=0.3, base_s=0.05, max_backoff_s=0.1),
)
# The expense and payment pollers' own ladder: short, a failing poll gives up soon.
FAST_POLL = dataclasses.replace(
    FAST, retry=RetryPolicy(max_attempts=3, max_wait_s=2, base_s=0.05, max_backoff_s=0.2)
)
# The retry loop alone (tests/unit/test_bc_retry.py): waits of milliseconds.
FAST_RETRY = RetryPolicy(max_attempts=4, max_wait_s=1.0, base_s=0.001, max_backoff_s=0.01)
# The export harness rides out storms of 429/503 within a test.
FAST_EXPORTS = dataclasses.replace(
    FAST, retry=RetryPolicy(max_attempts=5, max_wait_s=6, base_s=0.05, max_backoff_s=0.4)
)


class Emulator(Protocol):
    """What the settings need of a running emulator (a fixture handle or a process)."""

    @property
    def url(self) -> str: ...

    @property
    def ca_file(self) -> Path: ...


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings isolated for one test: own queue prefix and exchange, no .env file."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "queue_prefix": f"t-{tag}",
        "exchange": f"t-{tag}.events",
        "retry_delays": (0.2, 0.4),
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bc-sync.db'}",
        "outbox_dir": tmp_path / "outbox",
        "shutdown_grace_s": 5,
        "poll_interval_s": 3600,
        "_env_file": None,
    }
    values.update(overrides)
    return load_settings(**values)


def emulator_settings(tmp_path: Path, emulator: Emulator, **over: Any) -> Settings:
    """:func:`make_settings` pointed at the emulator (BC and Entra), with the test key and the
    back-office API token."""
    values: dict[str, Any] = {
        "bc_api_url": emulator.url,
        "authority_url": emulator.url,
        "ca_file": emulator.ca_file,
        "client_id": getattr(emulator, "client_id", DEMO.client_id),
        "secret_key": KEY,
        "api_token": f"backoffice={API_TOKEN}",
    }
    values.update(over)
    return make_settings(tmp_path, **values)
