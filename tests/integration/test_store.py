"""The config store on real SQLite files and a real PostgreSQL server.

PostgreSQL comes from ``DATABASE_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/
test``): each test run creates its own database ``bcsync_test_<random>`` there and drops it at
the end, so parallel runs never meet; every test starts from an empty schema.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from tests.support.db import KEY, MakeStore
from tests.support.factories import SECRET, config, secret_of
from worker.config.crypto import SecretBox, SecretDecryptError
from worker.config.model import ConfigValidationError
from worker.store import MIGRATIONS, Migration, Store, StoredConfigError
from worker.store.migrations import check_steps, run_migrations

# --- configs ------------------------------------------------------------------------------------


async def test_save_then_read_back(store: Store) -> None:
    assert await store.configs.get("org-1") is None
    assert await store.configs.put("org-1", config()) == "Created"
    stored = await store.configs.get("org-1")
    assert stored is not None
    assert stored.org_id == "org-1"
    assert stored.version == 1
    assert stored.config == config()
    assert stored.config.company_name == "CRONUS Sverige AB"
    assert secret_of(stored) == SECRET
    assert stored.created_at == stored.updated_at
    assert stored.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - stored.created_at) < timedelta(minutes=5)


async def test_a_second_save_is_an_update(store: Store) -> None:
    assert await store.configs.put("org-1", config()) == "Created"
    assert await store.configs.put("org-1", config(environment="Sandbox")) == "Updated"
    stored = await store.configs.get("org-1")
    assert stored is not None
    assert stored.version == 2
    assert stored.config.environment == "Sandbox"
    assert stored.updated_at >= stored.created_at


async def test_an_update_without_secret_keeps_the_stored_one(store: Store) -> None:
    await store.configs.put("org-1", config())
    changed = config(client_secret=None, notes="Changed by Bo", import_expenses=False)
    assert await store.configs.put("org-1", changed) == "Updated"
    stored = await store.configs.get("org-1")
    assert stored is not None
    assert secret_of(stored) == SECRET
    assert stored.config.notes == "Changed by Bo"
    assert stored.version == 2
    # The poller's column follows the saved toggle.
    assert await store.configs.list_orgs(import_expenses=True) == []


async def test_a_new_secret_replaces_the_old_one(store: Store) -> None:
    await store.configs.put("org-1", config())
    await store.configs.put("org-1", config(client_secret="new-secret-value"))
    assert secret_of(await store.configs.get("org-1")) == "new-secret-value"


async def test_creating_without_a_secret_is_a_field_error(store: Store) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        await store.configs.put("org-1", config(client_secret=None))
    assert caught.value.errors == [
        {
            "field": "client_secret",
            "code": "required",
            "message": "Client Secret is required when the integration is set up for the "
            "first time.",
        }
    ]
    assert await store.configs.get("org-1") is None


async def test_delete(store: Store) -> None:
    await store.configs.put("org-1", config())
    await store.record_failure("org-1", "invoice", "BC-VALIDATION", "Posting group missing")
    assert await store.configs.delete("org-1") is True
    assert await store.configs.get("org-1") is None
    assert await store.outcomes("org-1") == []
    assert await store.configs.delete("org-1") is False
    # Created again from scratch.
    assert await store.configs.put("org-1", config()) == "Created"


async def test_list_orgs_for_the_expense_poller(store: Store) -> None:
    await store.configs.put("org-b", config())
    await store.configs.put("org-a", config())
    await store.configs.put("org-c", config(import_expenses=False))
    assert await store.configs.list_orgs() == ["org-a", "org-b", "org-c"]
    assert await store.configs.list_orgs(import_expenses=True) == ["org-a", "org-b"]
    assert await store.configs.list_orgs(import_expenses=False) == ["org-c"]


async def test_the_public_view_of_a_stored_config(store: Store) -> None:
    await store.configs.put("org-1", config())
    stored = await store.configs.get("org-1")
    assert stored is not None
    public = stored.to_public_dict()
    assert public["client_secret_set"] is True
    assert public["version"] == 1
    assert SECRET not in repr(public)
    assert SECRET not in repr(stored)


@pytest.mark.parametrize("org", ["", " ", "x" * 101, "a\nb"])
async def test_bad_organization_ids_are_refused(store: Store, org: str) -> None:
    with pytest.raises(ValueError, match="organization id"):
        await store.configs.put(org, config())


async def test_unicode_and_odd_text_survive_the_round_trip(store: Store) -> None:
    cfg = config(
        company_name="O''Brien & Söner %",
        notes="Rad 1\nRad 2 — “quoted” ✓ 🚀",
        expense_activity="Inköp/utlägg",
    )
    await store.configs.put("org-ö", cfg)
    stored = await store.configs.get("org-ö")
    assert stored is not None
    assert stored.config == cfg


# --- the secret at rest -------------------------------------------------------------------------


async def test_no_plaintext_secret_in_the_database(store: Store, db_url: str) -> None:
    await store.configs.put("org-1", config())
    async with store.read() as conn:
        row = (await conn.execute(text("SELECT * FROM integration_configs"))).one()
    assert SECRET not in repr(tuple(row))
    assert row.secret_ciphertext
    if db_url.startswith("sqlite"):
        await store.close()
        db_file = Path(make_url(db_url).database or "")
        files = [p for p in db_file.parent.iterdir() if p.name.startswith(db_file.name)]
        assert db_file in files
        for path in files:  # the database, its WAL and shared-memory files
            assert SECRET.encode() not in path.read_bytes(), path.name


async def test_a_store_with_another_key_cannot_read_the_secret(make_store: MakeStore) -> None:
    first = make_store()
    await first.migrate()
    await first.configs.put("org-1", config())
    other = make_store(keys=[Fernet.generate_key().decode()])
    with pytest.raises(StoredConfigError) as caught:
        await other.configs.get("org-1")
    assert "org-1" in str(caught.value)
    assert "BC_SYNC_SECRET_KEY" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_key_rotation(make_store: MakeStore) -> None:
    old, new = KEY, Fernet.generate_key().decode()
    before = make_store(keys=[old])
    await before.migrate()
    await before.configs.put("org-1", config())
    await before.configs.put("org-2", config(client_secret="second-secret"))

    rotating = make_store(keys=[new, old])
    assert await rotating.rotate() == 2
    assert await rotating.rotate() == 0  # everything is under the new key already

    after = make_store(keys=[new])
    assert secret_of(await after.configs.get("org-1")) == SECRET
    assert secret_of(await after.configs.get("org-2")) == "second-secret"
    with pytest.raises(StoredConfigError):
        await before.configs.get("org-1")
    # Rotation does not count as a change of the configuration.
    stored = await after.configs.get("org-1")
    assert stored is not None
    assert stored.version == 1


async def test_rotation_reports_rows_no_key_can_read(make_store: MakeStore) -> None:
    lost = make_store(keys=[Fernet.generate_key().decode()])
    await lost.migrate()
    await lost.configs.put("org-lost", config())
    ok = make_store(keys=[KEY])
    await ok.configs.put("org-ok", config())
    new = Fernet.generate_key().decode()
    with pytest.raises(SecretDecryptError) as caught:
        await make_store(keys=[new, KEY]).rotate()
    assert "org-lost" in str(caught.value)
    assert "re-encrypted 1" in str(caught.value)
    assert secret_of(await make_store(keys=[new]).configs.get("org-ok")) == SECRET


# --- concurrency -----------------------------------------------------------------------------


async def test_concurrent_saves_leave_one_consistent_row(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    await stores[0].migrate()
    # Each save carries its own secret and notes, so a mixed-up row would show.
    saves = [
        stores[i % 4].configs.put("org-1", config(client_secret=f"secret-{i}", notes=f"save {i}"))
        for i in range(20)
    ]
    results = await asyncio.gather(*saves)
    assert sorted(results) == ["Created"] + ["Updated"] * 19
    stored = await stores[0].configs.get("org-1")
    assert stored is not None
    assert stored.version == 20
    assert await stores[0].configs.list_orgs() == ["org-1"]
    assert stored.config.notes is not None
    number = stored.config.notes.removeprefix("save ")
    assert secret_of(stored) == f"secret-{number}"


async def test_concurrent_saves_without_secret_all_update(store: Store) -> None:
    await store.configs.put("org-1", config())
    results = await asyncio.gather(
        *(store.configs.put("org-1", config(client_secret=None)) for _ in range(10))
    )
    assert results == ["Updated"] * 10
    stored = await store.configs.get("org-1")
    assert stored is not None
    assert stored.version == 11
    assert secret_of(stored) == SECRET


# --- migrations -------------------------------------------------------------------------------


async def test_migrations_are_idempotent(make_store: MakeStore) -> None:
    store = make_store()
    assert await store.migrate() == [m.version for m in MIGRATIONS]
    assert await store.migrate() == []
    assert await make_store().migrate() == []
    async with store.read() as conn:
        result = await conn.execute(text("SELECT version FROM schema_version"))
        versions: list[int] = list(result.scalars())
        assert sorted(versions) == [m.version for m in MIGRATIONS]


async def test_migrations_started_at_once_run_once(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(5)]
    results = await asyncio.gather(*(s.migrate() for s in stores))
    assert sorted(results) == [[], [], [], [], [m.version for m in MIGRATIONS]]
    assert await stores[0].configs.put("org-1", config()) == "Created"


async def test_the_schema_matches_the_table_definitions(store: Store) -> None:
    def columns(sync_conn: Any) -> dict[str, set[str]]:
        inspector = inspect(sync_conn)
        return {
            name: {c["name"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names()
        }

    async with store.read() as conn:
        actual = await conn.run_sync(columns)
    for table in store.metadata.sorted_tables:
        assert table.name in actual, table.name
        assert {c.name for c in table.columns} <= actual[table.name], table.name


async def test_an_appended_step_runs_once_on_an_existing_database(store: Store) -> None:
    async def backfill(conn: Any) -> None:
        await conn.execute(text("INSERT INTO expense_watermarks (org_id) VALUES ('seed')"))

    step = Migration(
        len(MIGRATIONS) + 1,
        "expense watermarks",
        ("CREATE TABLE expense_watermarks (org_id VARCHAR(100) PRIMARY KEY, since {TIMESTAMP})",),
        run=backfill,
    )
    steps = [*MIGRATIONS, step]
    assert await run_migrations(store.engine, steps) == [step.version]
    assert await run_migrations(store.engine, steps) == []
    async with store.read() as conn:
        result = await conn.execute(text("SELECT org_id FROM expense_watermarks"))
        orgs: list[str] = list(result.scalars())
        assert orgs == ["seed"]
    # A database migrated by a newer release still works with this release's steps.
    assert await store.migrate() == []


async def test_a_failing_step_leaves_the_database_as_it_was(store: Store) -> None:
    broken = Migration(
        len(MIGRATIONS) + 1,
        "broken",
        ("CREATE TABLE half_done (id INTEGER PRIMARY KEY)", "THIS IS NOT SQL"),
    )
    with pytest.raises(Exception, match=r"(?i)syntax"):
        await run_migrations(store.engine, [*MIGRATIONS, broken])

    def tables(sync_conn: Any) -> list[str]:
        return list(inspect(sync_conn).get_table_names())

    async with store.read() as conn:
        assert "half_done" not in await conn.run_sync(tables)


def test_steps_must_be_numbered_in_order() -> None:
    check_steps(MIGRATIONS)
    with pytest.raises(ValueError, match="numbered"):
        check_steps([*MIGRATIONS, Migration(len(MIGRATIONS) + 2, "gap")])


# --- sync outcomes -----------------------------------------------------------------------------


async def test_outcomes_per_object_type(store: Store) -> None:
    t0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    outcomes = store.sync_outcomes
    await outcomes.record_success("org-1", "invoice", "103001", at=t0)
    await outcomes.record_failure(
        "org-1",
        "invoice",
        "BC-POSTING-GROUP-MISSING",
        "Posting group EXPORT is missing",
        at=t0 + timedelta(minutes=5),
    )
    await outcomes.record_success("org-1", "customer", "10006", at=t0)
    await outcomes.record_success("org-2", "invoice", "X", at=t0)
    got = {o.object_type: o for o in await store.outcomes("org-1")}
    assert list(got) == ["customer", "invoice"]
    invoice = got["invoice"]
    assert invoice.last_success_at == t0
    assert invoice.last_success_ref == "103001"
    assert invoice.last_failure_at == t0 + timedelta(minutes=5)
    assert invoice.last_failure_code == "BC-POSTING-GROUP-MISSING"
    assert invoice.last_failure_message == "Posting group EXPORT is missing"
    assert got["customer"].last_failure_at is None
    assert invoice.to_dict()["last_success_at"] == "2026-11-20T08:00:00+00:00"


async def test_a_late_report_does_not_overwrite_a_newer_one(store: Store) -> None:
    t0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    await store.sync_outcomes.record_success("org-1", "invoice", "new", at=t0)
    await store.sync_outcomes.record_success(
        "org-1", "invoice", "old", at=t0 - timedelta(seconds=1)
    )
    await store.sync_outcomes.record_failure("org-1", "invoice", "NEW", "new", at=t0)
    await store.sync_outcomes.record_failure(
        "org-1", "invoice", "OLD", "old", at=t0 - timedelta(hours=1)
    )
    [outcome] = await store.outcomes("org-1")
    assert (outcome.last_success_ref, outcome.last_failure_code) == ("new", "NEW")


async def test_the_last_waiting_object_is_kept_beside_success_and_failure(store: Store) -> None:
    t0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    outcomes = store.sync_outcomes
    await outcomes.record_success("org-1", "invoice", "1863", at=t0)
    await outcomes.record_waiting(
        "org-1", "invoice", "1864", "BC-INVOICE-AWAITING-APPROVAL", "Invoice 1864 waits", at=t0
    )
    await outcomes.record_waiting(  # a late report of an older one changes nothing
        "org-1", "invoice", "1860", "BC-INVOICE-AWAITING-APPROVAL", "old", at=t0 - timedelta(1)
    )
    await outcomes.record_success("org-1", "invoice", "1865", at=t0 + timedelta(minutes=1))
    [invoice] = await store.outcomes("org-1")
    answer = invoice.to_dict()
    assert answer["last_success_ref"] == "1865"
    assert (answer["last_waiting_ref"], answer["last_waiting_code"]) == (
        "1864",
        "BC-INVOICE-AWAITING-APPROVAL",
    )
    assert answer["last_waiting_message"] == "Invoice 1864 waits"
    assert answer["last_waiting_at"] == "2026-11-20T08:00:00+00:00"
    assert answer["last_failure_code"] is None


async def test_failure_messages_are_masked_and_bounded(store: Store) -> None:
    await store.record_failure(
        "org-1",
        "invoice",
        "BC-VALIDATION",
        "token rejected: Authorization: Bearer eyJabcdefghij.eyJklmnopqrs.sig " + "x" * 5000,
    )
    [outcome] = await store.outcomes("org-1")
    assert outcome.last_failure_message is not None
    assert "eyJabcdefghij" not in outcome.last_failure_message
    assert len(outcome.last_failure_message) <= 2000


async def test_concurrent_outcome_reports_keep_one_row(store: Store) -> None:
    await asyncio.gather(
        *(store.record_success("org-1", "project", f"P{i}") for i in range(10)),
        *(
            store.record_failure("org-1", "project", "BC-UNAVAILABLE", f"try {i}")
            for i in range(10)
        ),
    )
    [outcome] = await store.outcomes("org-1")
    assert outcome.last_success_ref is not None
    assert outcome.last_failure_code == "BC-UNAVAILABLE"


# --- operations -------------------------------------------------------------------------------


async def test_ping(store: Store) -> None:
    assert await store.ping() is True


async def test_ping_reports_an_unreachable_database(tmp_path: Path) -> None:
    store = Store.from_url(
        "postgresql+asyncpg://postgres@127.0.0.1:1/none", secrets=SecretBox([KEY])
    )
    try:
        assert await store.ping() is False
    finally:
        await store.close()


def test_an_unsupported_database_is_refused() -> None:
    with pytest.raises(Exception, match="unsupported database"):
        Store.from_url("mysql+aiomysql://u@h/db", secrets=SecretBox([KEY]))


async def test_the_sqlite_file_uses_write_ahead_logging(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}", secrets=SecretBox([KEY]))
    try:
        await store.migrate()
        async with store.read() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
    finally:
        await store.close()
