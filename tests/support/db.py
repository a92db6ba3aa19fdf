"""Database helpers: the test key for stored secrets, the PostgreSQL server of the run, and a
way to run a coroutine from sync code (session fixtures)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from worker.store import Store

# The one Fernet key of the run: the stores' secret box and the settings' secret_key.
KEY = Fernet.generate_key().decode()

MakeStore = Callable[..., Store]


def admin_url() -> str:
    return os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def run_in_thread(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion from sync code, even while an event loop is running."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()
