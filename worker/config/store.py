"""SQL store of integration configs and sync outcomes (SQLite by default, PostgreSQL for several
workers), on SQLAlchemy Core with asyncio.

``Store`` owns the engine and hands out repositories (``store.configs``,
``store.sync_outcomes``). Other modules add their own tables the same way: declare a ``Table``
on :data:`worker.config.migrations.metadata`, append a step to ``MIGRATIONS``, and write a small
repository class that takes the ``Store`` and uses ``store.read()`` / ``store.write()`` /
``store.upsert()``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import SecretStr, ValidationError
from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Insert,
    Integer,
    String,
    Table,
    Text,
    case,
    delete,
    event,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from worker.config.crypto import SecretBox, SecretDecryptError
from worker.config.migrations import (
    MIGRATIONS,
    JsonType,
    Migration,
    UtcDateTime,
    metadata,
    run_migrations,
)
from worker.config.model import ConfigValidationError, IntegrationConfig, field_errors
from worker.config.settings import Settings, get_settings
from worker.log import redact_text, register_secret

log = structlog.get_logger(__name__)

ORG_ID_MAX = 100
OBJECT_TYPE_MAX = 50
FAILURE_MESSAGE_MAX = 2000
# Seconds a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0

integration_configs = Table(
    "integration_configs",
    metadata,
    Column("org_id", String(ORG_ID_MAX), primary_key=True),
    Column("config", JsonType, nullable=False),  # IntegrationConfig without the secret
    Column("secret_ciphertext", Text, nullable=False),  # Fernet token of the client secret
    # Copied out of ``config`` so the expense poller can select its organizations in SQL.
    Column("import_expenses", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False),  # 1 on create, +1 on every save
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

sync_outcomes = Table(
    "sync_outcomes",
    metadata,
    Column("org_id", String(ORG_ID_MAX), primary_key=True),
    Column("object_type", String(OBJECT_TYPE_MAX), primary_key=True),
    Column("last_success_at", UtcDateTime),
    Column("last_success_ref", String(200)),
    Column("last_failure_at", UtcDateTime),
    Column("last_failure_code", String(100)),
    Column("last_failure_message", Text),
)


class StoreError(Exception):
    """The store cannot do what was asked; the message is safe to show to ops."""


class StoredConfigError(StoreError):
    """A stored configuration cannot be used (no longer valid, or its secret undecryptable)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_org_id(org_id: str) -> str:
    """A Moment organization id as the store keys it (non-empty, one line, ≤ 100 characters)."""
    if not isinstance(org_id, str) or not org_id.strip():
        raise ValueError("organization id must be a non-empty string")
    if len(org_id) > ORG_ID_MAX or not org_id.isprintable():
        raise ValueError(f"organization id must be printable and at most {ORG_ID_MAX} characters")
    return org_id


@dataclass(frozen=True)
class StoredConfig:
    """A saved configuration with its secret (internal use) and its row metadata."""

    org_id: str
    config: IntegrationConfig
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def stamp(self) -> tuple[int, datetime]:
        """Changes whenever the row changes (also when it is deleted and created again)."""
        return (self.version, self.updated_at)

    def to_public_dict(self) -> dict[str, Any]:
        """The config as users may see it (no secret), with version and timestamps."""
        return {
            **self.config.to_public_dict(),
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class SyncOutcome:
    """The last success and the last failure of one object type of one organization."""

    org_id: str
    object_type: str
    last_success_at: datetime | None
    last_success_ref: str | None
    last_failure_at: datetime | None
    last_failure_code: str | None
    last_failure_message: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the status endpoint."""
        return {
            "object_type": self.object_type,
            "last_success_at": _iso(self.last_success_at),
            "last_success_ref": self.last_success_ref,
            "last_failure_at": _iso(self.last_failure_at),
            "last_failure_code": self.last_failure_code,
            "last_failure_message": self.last_failure_message,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


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
        """The ordered schema steps (append new ones in ``worker.config.migrations``)."""
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
            log.warning("store_unreachable", error=type(exc).__name__)
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

    async def outcomes(self, org_id: str) -> list[SyncOutcome]:
        return await self.sync_outcomes.for_org(org_id)


def _make_parent_dir(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


class ConfigRepository:
    """The ``integration_configs`` table: one row per Moment organization."""

    table = integration_configs

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, org_id: str) -> StoredConfig | None:
        """The organization's config including its decrypted secret, or ``None``."""
        t = self.table
        async with self._store.read() as conn:
            row = (await conn.execute(select(t).where(t.c.org_id == check_org_id(org_id)))).first()
        if row is None:
            return None
        try:
            secret = self._store.secrets.decrypt(row.secret_ciphertext)
        except SecretDecryptError as exc:
            raise StoredConfigError(f"organization {org_id}: {exc}") from None
        register_secret(secret)
        try:
            config = IntegrationConfig.from_stored(row.config, secret)
        except ValidationError as exc:
            problems = "; ".join(e["message"] for e in field_errors(exc))
            raise StoredConfigError(
                f"organization {org_id}: the stored configuration is no longer valid: {problems}"
            ) from None
        return StoredConfig(org_id, config, row.version, row.created_at, row.updated_at)

    async def stamp(self, org_id: str) -> tuple[int, datetime] | None:
        """``(version, updated_at)`` of the row without loading it: a cheap change check."""
        t = self.table
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    select(t.c.version, t.c.updated_at).where(t.c.org_id == check_org_id(org_id))
                )
            ).first()
        return None if row is None else (row.version, row.updated_at)

    async def put(self, org_id: str, config: IntegrationConfig) -> Literal["Created", "Updated"]:
        """Save the config. ``Created`` when this call made the row, else ``Updated``.

        Without ``client_secret`` the stored secret is kept; creating without one raises
        :class:`ConfigValidationError` on ``client_secret``. Concurrent saves for one
        organization leave one consistent row and exactly one of them reports ``Created``.
        """
        t = self.table
        org_id = check_org_id(org_id)
        now = utcnow()
        values: dict[str, Any] = {
            "config": config.to_storage_dict(),
            "import_expenses": config.import_expenses,
            "updated_at": now,
        }
        if config.client_secret is None:
            async with self._store.write() as conn:
                version = (
                    await conn.execute(
                        update(t)
                        .where(t.c.org_id == org_id)
                        .values(**values, version=t.c.version + 1)
                        .returning(t.c.version)
                    )
                ).scalar()
            if version is None:
                raise ConfigValidationError(
                    [
                        {
                            "field": "client_secret",
                            "code": "required",
                            "message": "Client Secret is required when the integration is "
                            "set up for the first time.",
                        }
                    ]
                )
            return "Updated"
        values["secret_ciphertext"] = self._store.secrets.encrypt(
            config.client_secret.get_secret_value()
        )
        stmt = self._store.upsert(
            t,
            {**values, "org_id": org_id, "version": 1, "created_at": now},
            key=["org_id"],
            set_=lambda new: {
                "config": new.config,
                "import_expenses": new.import_expenses,
                "secret_ciphertext": new.secret_ciphertext,
                "updated_at": new.updated_at,
                "version": t.c.version + 1,
            },
        )
        async with self._store.write() as conn:
            version = (await conn.execute(stmt.returning(t.c.version))).scalar_one()
        # Only the inserting statement sees version 1: every update adds one.
        return "Created" if version == 1 else "Updated"

    async def delete(self, org_id: str) -> bool:
        """Remove the config and the organization's sync outcomes; ``False`` if there was none."""
        org_id = check_org_id(org_id)
        async with self._store.write() as conn:
            result = await conn.execute(delete(self.table).where(self.table.c.org_id == org_id))
            await conn.execute(delete(sync_outcomes).where(sync_outcomes.c.org_id == org_id))
        return bool(result.rowcount)

    async def list_orgs(self, *, import_expenses: bool | None = None) -> list[str]:
        """Organization ids with a config, sorted; filter on the import-expenses toggle."""
        t = self.table
        query = select(t.c.org_id).order_by(t.c.org_id)
        if import_expenses is not None:
            query = query.where(t.c.import_expenses.is_(import_expenses))
        async with self._store.read() as conn:
            return list((await conn.execute(query)).scalars())

    async def rotate_secrets(self) -> int:
        """Re-encrypt secrets not yet under the first key; returns how many were re-encrypted.

        Rows are updated one by one and only if unchanged meanwhile (a concurrent save already
        used the first key). Rows no key can decrypt are reported after the others are done.
        """
        t = self.table
        box = self._store.secrets
        async with self._store.read() as conn:
            rows = (await conn.execute(select(t.c.org_id, t.c.secret_ciphertext))).all()
        rotated = 0
        broken: list[str] = []
        for row in rows:
            org_id, token = str(row.org_id), str(row.secret_ciphertext)
            if box.is_current(token):
                continue
            try:
                new_token = box.rotate(token)
            except SecretDecryptError:
                broken.append(org_id)
                continue
            async with self._store.write() as conn:
                result = await conn.execute(
                    update(t)
                    .where(t.c.org_id == org_id, t.c.secret_ciphertext == token)
                    .values(secret_ciphertext=new_token)
                )
            rotated += result.rowcount
        if broken:
            raise SecretDecryptError(
                f"re-encrypted {rotated} client secret(s), but those of organization(s) "
                f"{', '.join(broken)} cannot be decrypted with any key in BC_SYNC_SECRET_KEY; "
                "put the old key back after the new one, or save those integrations again."
            )
        log.info("secrets_rotated", count=rotated)
        return rotated


def _latest(current: Any, new: Any, when_new: Any) -> ColumnElement[Any]:
    """``new`` unless the stored event is newer: out-of-order reports never go back in time."""
    return case((when_new, new), else_=current)


class SyncOutcomeRepository:
    """The ``sync_outcomes`` table: last success and failure per organization and object type."""

    table = sync_outcomes

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record_success(
        self, org_id: str, object_type: str, ref: str | None = None, *, at: datetime | None = None
    ) -> None:
        """Remember a success (``ref``: e.g. the BC number or id of what was written)."""
        async with self._store.write() as conn:
            await conn.execute(self._success(org_id, object_type, ref, at or utcnow()))

    async def record_successes(
        self, items: Sequence[tuple[str, str, str | None, datetime]]
    ) -> None:
        """Several ``(org_id, object_type, ref, at)`` successes in one transaction."""
        if not items:
            return
        async with self._store.write() as conn:
            for org_id, object_type, ref, at in items:
                await conn.execute(self._success(org_id, object_type, ref, at))

    def _success(self, org_id: str, object_type: str, ref: str | None, at: datetime) -> Insert:
        t = self.table
        values = {
            "org_id": check_org_id(org_id),
            "object_type": _object_type(object_type),
            "last_success_at": at,
            "last_success_ref": (ref or None) and ref[:200],
        }

        def set_(new: Any) -> Mapping[str, Any]:
            is_newer = (t.c.last_success_at.is_(None)) | (
                new.last_success_at >= t.c.last_success_at
            )
            return {
                "last_success_at": _latest(t.c.last_success_at, new.last_success_at, is_newer),
                "last_success_ref": _latest(t.c.last_success_ref, new.last_success_ref, is_newer),
            }

        return self._store.upsert(t, values, ["org_id", "object_type"], set_)

    async def record_failure(
        self,
        org_id: str,
        object_type: str,
        code: str,
        message: str,
        *,
        at: datetime | None = None,
    ) -> None:
        """Remember a failure with its error code and a message for the Moment admin."""
        t = self.table
        at = at or utcnow()
        values = {
            "org_id": check_org_id(org_id),
            "object_type": _object_type(object_type),
            "last_failure_at": at,
            "last_failure_code": code[:100],
            # Messages may quote BC's or Entra's answers: mask anything secret-looking.
            "last_failure_message": redact_text(message)[:FAILURE_MESSAGE_MAX],
        }

        def set_(new: Any) -> Mapping[str, Any]:
            is_newer = (t.c.last_failure_at.is_(None)) | (
                new.last_failure_at >= t.c.last_failure_at
            )
            return {
                name: _latest(t.c[name], new[name], is_newer)
                for name in ("last_failure_at", "last_failure_code", "last_failure_message")
            }

        async with self._store.write() as conn:
            await conn.execute(self._store.upsert(t, values, ["org_id", "object_type"], set_))

    async def for_org(self, org_id: str) -> list[SyncOutcome]:
        """The organization's outcomes, one per object type, sorted by object type."""
        t = self.table
        query = select(t).where(t.c.org_id == check_org_id(org_id)).order_by(t.c.object_type)
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        return [SyncOutcome(**row._asdict()) for row in rows]


def _object_type(value: str) -> str:
    if not value or len(value) > OBJECT_TYPE_MAX:
        raise ValueError(f"object type must be 1 to {OBJECT_TYPE_MAX} characters")
    return value
