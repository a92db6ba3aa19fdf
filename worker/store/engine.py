"""SQL store of integration configs and sync outcomes (SQLite by default, PostgreSQL for several
workers), on SQLAlchemy Core with asyncio.

``Store`` owns the engine and hands out repositories (``store.configs``,
``store.sync_outcomes``). Other modules add their own tables the same way: declare a ``Table``
on :data:`worker.store.migrations.metadata`, append a step to ``MIGRATIONS``, and write a small
repository class that takes the ``Store`` and uses ``store.read()`` / ``store.write()`` /
``store.upsert()``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import structlog
from pydantic import SecretStr
from sqlalchemy import Insert, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from worker.config.crypto import SecretBox
from worker.config.settings import Settings, get_settings
from worker.store.base import StoreError
from worker.store.configs import ConfigRepository
from worker.store.migrations import MIGRATIONS, Migration, metadata, run_migrations
from worker.store.outcomes import SyncOutcome, SyncOutcomeRepository

log = structlog.get_logger(__name__)

# Seconds a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------------
# SQLite connection setup


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _sqlite_on_begin): sqlite3's legacy
    # mode would run DDL outside transactions and begin lazily, which turns a read followed by
    # a write into an immediate "database is locked".
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        # WAL itself is switched on once per file by Store.migrate(); it then sticks.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise ValueError(f"bad sqlite_begin mode {mode!r}")
    conn.exec_driver_sql(f"BEGIN {mode}")


# ---------------------------------------------------------------------------------------------


class Store:
    """The database: engine, schema migrations and repositories.

    Create with :meth:`from_url` or :meth:`from_settings`, then ``await store.migrate()`` once
    at start and ``await store.close()`` at the end (or use ``async with``).
    """

    metadata = metadata

    def __init__(self, engine: AsyncEngine, secrets: SecretBox) -> None:
        self.engine = engine
        self.secrets = secrets
        self.dialect: str = engine.dialect.name
        # SQLite has one writer at a time: this process's write transactions take turns here
        # instead of in SQLite's busy handler, whose sleeps (1, 2, 5 … 100 ms) added tens of
        # milliseconds to writes that waited on each other (make bench, scenario 3 latency).
        self._write_turn: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self.configs = ConfigRepository(self)
        self.sync_outcomes = SyncOutcomeRepository(self)

    @classmethod
    def from_url(
        cls,
        url: str | SecretStr | URL,
        *,
        secrets: SecretBox | None = None,
        settings: Settings | None = None,
        **engine_options: Any,
    ) -> Store:
        """A store on ``url`` (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``).

        Secrets are encrypted with ``secrets``, else with the keys of ``settings`` (default:
        the process settings).
        """
        if isinstance(url, SecretStr):
            url = url.get_secret_value()
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError("the database URL is not a valid URL") from None
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            _make_parent_dir(parsed)
            connect_args = dict(engine_options.pop("connect_args", {}))
            connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
            engine = create_async_engine(parsed, connect_args=connect_args, **engine_options)
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        elif backend == "postgresql":
            # Long-running workers outlive database restarts: test connections before use.
            engine_options.setdefault("pool_pre_ping", True)
            engine = create_async_engine(parsed, **engine_options)
        else:
            raise StoreError(
                f"unsupported database {backend!r}: use sqlite+aiosqlite:// or "
                "postgresql+asyncpg://"
            )
        if secrets is None:
            secrets = SecretBox.from_settings(settings or get_settings())
        return cls(engine, secrets)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store named by ``BC_SYNC_DATABASE_URL``, with ``BC_SYNC_SECRET_KEY``."""
        return cls.from_url(settings.database_url, settings=settings)

    @property
    def migrations(self) -> list[Migration]:
        """The ordered schema steps (append new ones in ``worker.store.migrations``)."""
        return MIGRATIONS

    async def migrate(self) -> list[int]:
        """Bring the schema up to date; safe to run from several processes at once."""
        if self.dialect == "sqlite":
            await self._enable_wal()
        return await run_migrations(self.engine, self.migrations)

    async def _enable_wal(self) -> None:
        """Put the SQLite file in write-ahead-log mode (persistent; readers and the writer
        no longer block each other)."""
        # Changing the journal mode needs the file to itself, and SQLite answers "locked" at
        # once instead of waiting when another connection does the same: retry a little.
        for attempt in range(1, 41):
            try:
                async with self.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    # The driver connection directly: the mode cannot change inside a
                    # transaction, and every statement through SQLAlchemy begins one.
                    driver: Any = raw.driver_connection
                    cursor = await driver.execute("PRAGMA journal_mode")
                    mode = str((await cursor.fetchone())[0]).lower()
                    if mode not in ("wal", "memory"):
                        await driver.execute("PRAGMA journal_mode = WAL")
                    return
            except (OperationalError, sqlite3.OperationalError) as exc:
                if "locked" not in str(exc) or attempt == 40:
                    raise
                await asyncio.sleep(min(0.01 * attempt, 0.1))

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        """Whether the database answers (for ``/readyz``)."""
        try:
            async with self.read() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready"; the reason goes to the log
            log.warning("store.unreachable", error=type(exc).__name__)
            return False
        return True

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading (a snapshot transaction, rolled back at the end)."""
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction committed at the end (rolled back on error).

        On SQLite the write lock is taken at BEGIN, so a transaction that reads before it
        writes waits for other writers instead of failing with "database is locked".
        """
        async with self._turn(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                await conn.execution_options(sqlite_begin="IMMEDIATE")
            async with conn.begin():
                yield conn

    def _turn(self) -> AbstractAsyncContextManager[Any]:
        return self._write_turn if self._write_turn is not None else nullcontext()

    def upsert(
        self,
        table: Table,
        values: Mapping[str, Any],
        key: Sequence[str],
        set_: Sequence[str] | Callable[[Any], Mapping[str, Any]],
    ) -> Insert:
        """``INSERT … ON CONFLICT (key) DO UPDATE`` for this dialect.

        ``set_`` lists the columns to copy from the new values, or is a function of the
        ``excluded`` row (the new values) returning the SET clause.
        """
        stmt: Any = (
            postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)
        ).values(**values)
        if callable(set_):
            assignments = dict(set_(stmt.excluded))
        else:
            assignments = {name: stmt.excluded[name] for name in set_}
        result: Insert = stmt.on_conflict_do_update(index_elements=list(key), set_=assignments)
        return result

    async def rotate(self) -> int:
        """Re-encrypt every stored secret with the first key; returns how many changed."""
        return await self.configs.rotate_secrets()

    # Shortcuts for the sync handlers and the status endpoint.

    async def record_success(self, org_id: str, object_type: str, ref: str | None = None) -> None:
        await self.sync_outcomes.record_success(org_id, object_type, ref)

    async def record_failure(self, org_id: str, object_type: str, code: str, message: str) -> None:
        await self.sync_outcomes.record_failure(org_id, object_type, code, message)

    async def record_waiting(
        self, org_id: str, object_type: str, ref: str | None, code: str, message: str
    ) -> None:
        await self.sync_outcomes.record_waiting(org_id, object_type, ref, code, message)

    async def outcomes(self, org_id: str) -> list[SyncOutcome]:
        return await self.sync_outcomes.for_org(org_id)


def _make_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
