"""Database fixtures (a conftest plugin): real SQLite files and a real PostgreSQL server
(``DATABASE_URL``, default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``). Each test
run creates its own PostgreSQL database and drops it at the end.
"""

from __future__ import annotations

import secrets as random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support.db import KEY, MakeStore, admin_url, asyncpg_dsn, run_in_thread
from worker.config.crypto import SecretBox
from worker.store import Store


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run; skipped when no server answers."""
    admin = admin_url()
    if not admin.startswith("postgresql"):
        pytest.skip(f"DATABASE_URL is not PostgreSQL ({make_url(admin).drivername})")
    name = f"bcsync_test_{random.token_hex(6)}"

    async def create() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin), timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin), timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        run_in_thread(create())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        where = make_url(admin).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL not reachable at {where}: {type(exc).__name__}: {exc}")
    url = make_url(admin).set(drivername="postgresql+asyncpg", database=name)
    yield url.render_as_string(hide_password=False)
    run_in_thread(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'state' / 'bc-sync.db'}"
        return
    url: str = request.getfixturevalue("pg_database")
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    yield url


@pytest.fixture
async def make_store(db_url: str) -> AsyncIterator[MakeStore]:
    """Stores on the test database (several = several processes); all closed afterwards."""
    made: list[Store] = []

    def make(*, keys: list[str] | None = None, url: str | None = None) -> Store:
        store = Store.from_url(url or db_url, secrets=SecretBox(keys or [KEY]))
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    s = make_store()
    await s.migrate()
    return s
