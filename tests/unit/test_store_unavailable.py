"""Which store errors mean "the database is not there right now" (a transient condition the
worker waits out) and which are bugs: real engines, real drivers, no services needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.support.db import KEY
from tests.support.net import free_port
from worker.config.crypto import SecretBox
from worker.store import Store, unavailable

BOX = SecretBox([KEY])


async def _judged(store: Store, sql: str = "SELECT 1") -> tuple[bool, type[BaseException]]:
    """Whether the statement's error counts as unavailable, and its class. Judged inside the
    handler, so that no traceback keeps the driver's connection alive past the store."""
    try:
        async with store.read() as conn:
            await conn.execute(text(sql))
    except Exception as exc:
        return unavailable(exc), type(exc)
    finally:
        await store.close()
    raise AssertionError("the statement succeeded")


async def test_a_postgresql_server_that_refuses_connections_is_unavailable(
    tmp_path: Path,
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    store = Store.from_url(url, secrets=BOX)
    assert (await _judged(store))[0]


async def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    store = Store.from_url(f"sqlite+aiosqlite:///{missing}/x.db", secrets=BOX)
    missing.rmdir()  # from_url made the folder; without it SQLite cannot open the file
    assert (await _judged(store))[0]


async def test_a_wrong_query_is_a_bug_not_an_outage(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", secrets=BOX)
    judged, kind = await _judged(store, "SELECT * FROM no_such_table")
    assert issubclass(kind, OperationalError)  # SQLite's class for both: the text tells apart
    assert not judged


def test_errors_from_outside_the_store_are_not_outages() -> None:
    assert not unavailable(ValueError("bad value"))
    try:
        raise ConnectionRefusedError(111, "refused")  # raised here, not in a database driver
    except ConnectionRefusedError as exc:
        assert not unavailable(exc)


@pytest.mark.parametrize("wrapped", [True, False])
def test_the_cause_chain_is_followed(wrapped: bool) -> None:
    inner = OperationalError("SELECT 1", {}, Exception("database is locked"))
    outer = RuntimeError("handler failed")
    outer.__cause__ = inner if wrapped else None
    assert unavailable(outer) is wrapped
