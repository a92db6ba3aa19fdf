"""``python -m tests.bench.console_pages [--letters 100000] [--orgs 1000] [--database URL]``:
every console page at 100,000 dead letters (index rows) and 1,000 organizations, on SQLite and
PostgreSQL. Prints the best of 5 full HTTP requests per page in milliseconds (signed in,
server-rendered HTML, through aiohttp on a real socket).

``tests/integration/test_console_scale.py`` runs the same seed and pages at the same size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.fernet import Fernet
from sqlalchemy import text

from worker.api.app import parse_tokens
from worker.config.crypto import SecretBox
from worker.config.settings import load_settings
from worker.console.overview import Overview
from worker.console.sessions import Sessions, SignInLimiter
from worker.console.web import ConsoleContext, add_console
from worker.ops.dlq import DeadLetters
from worker.ops.dlq.index import DeadLetterIndex
from worker.ops.dlq.runs import Operations
from worker.ops.signals import SignalRepository
from worker.store import Store

TOKEN = "bench-token-4f3e2d1c0b"
CODES = (
    "BC-ACCOUNT-MISSING",
    "BC-POSTING-GROUP-MISSING",
    "BC-DIMENSION-VALUE-MISSING",
    "BC-CUSTOMER-MISSING",
    "BC-VALIDATION",
    "EVENT-INVALID",
    "BC-DEPARTMENT-MISSING",
    "DELIVERY-LIMIT",
)
_SERIES = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :last)",
    "postgresql": "WITH n(i) AS (SELECT generate_series(0, :last))",
}
_AGO = {
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', :now, '-' || i || ' seconds')",
    "postgresql": "CAST(:now AS TIMESTAMPTZ) - i * INTERVAL '1 second'",
}
_CODE = "CASE i % 8 " + " ".join(f"WHEN {n} THEN '{c}'" for n, c in enumerate(CODES)) + " END"
_TYPE = (
    "CASE i % 3 WHEN 0 THEN 'moment.invoice.created' WHEN 1 THEN 'moment.customer.created' "
    "ELSE 'moment.project.created' END"
)
_ORG = "'org-' || CAST(i % :orgs AS TEXT)"
# A detail document of the size the consumer stores for a typical invoice (~1.5 KB).
_DETAIL_DOC = json.dumps(
    {
        "summary": {"code": "BC-ACCOUNT-MISSING"},
        "error": {"code": "BC-ACCOUNT-MISSING", "title": "t", "fix": "f"},
        "history": [
            {
                "at": "2026-11-20T10:00:00Z",
                "code": "BC-ACCOUNT-MISSING",
                "class": "permanent",
                "message": "A G/L account does not exist.",
                "attempt": 1,
            }
        ],
        "headers": {"x-bc-error-code": "BC-ACCOUNT-MISSING", "x-bc-attempts": 1},
        "envelope": {
            "specversion": "1.0",
            "type": "moment.invoice.created",
            "data": {
                "invoice": {
                    "number": "100000",
                    "lines": [{"description": "Consulting", "quantity": 10, "unit_price": 1200.0}]
                    * 12,
                }
            },
        },
    }
)
_DETAIL = "'" + _DETAIL_DOC.replace("'", "''") + "'"
_LETTERS = """INSERT INTO dead_letter_index (id, event_id, org_id, event_type, subject, code,
    error_class, message, attempts, first_failure, last_failure, copies, archived, indexed_at)
{series}
SELECT 'ev-' || CAST(i AS TEXT), 'ev-' || CAST(i AS TEXT), {org}, {type},
    'invoice ' || CAST(100000 + i AS TEXT), {code}, 'permanent',
    'A G/L account on invoice ' || CAST(100000 + i AS TEXT) || ' does not exist.', 1,
    {ago}, {ago}, 1, {archived}, {ago}
FROM n"""
_DETAILS = """INSERT INTO dead_letter_details (id, detail)
{series}
SELECT 'ev-' || CAST(i AS TEXT), {detail} FROM n"""
_CONFIGS = """INSERT INTO integration_configs (org_id, config, secret_ciphertext, import_expenses,
    version, created_at, updated_at)
{series}
SELECT {org}, {open}'{{"tenant_id": "t", "environment": "Production", "company_name": "Company ' ||
    CAST(i AS TEXT) || ' AB", "export_customers": true, "export_projects": true,
    "export_invoices": true, "import_expenses": true, "notes": "seeded"}}'{close}, 'x', TRUE, 1,
    {ago}, {ago}
FROM n"""
_OUTCOMES = """INSERT INTO sync_outcomes (org_id, object_type, last_success_at, last_success_ref)
{series}
SELECT {org}, t.object_type, {ago}, 'BC-' || CAST(i AS TEXT)
FROM n, (SELECT 'customer' AS object_type UNION ALL SELECT 'project'
    UNION ALL SELECT 'invoice') AS t"""
_POLLS = """INSERT INTO expense_polls (org_id, last_poll_at, last_success_at, paused_at)
{series}
SELECT {org}, {ago}, {ago}, CASE WHEN i % 50 = 0 THEN {ago} END
FROM n"""
_SIGNALS = """INSERT INTO org_signals (org_id, throttled_at, breaker_open_at,
    credentials_rejected_at)
{series}
SELECT {org}, {ago}, CASE WHEN i % 2 = 0 THEN {ago} END, CASE WHEN i % 3 = 0 THEN {ago} END
FROM n WHERE i % 40 = 0"""


async def seed(store: Store, letters: int = 100_000, orgs: int = 1_000) -> None:
    """``letters`` dead-letter index rows over ``orgs`` organizations (2 % archived), and each
    organization's config, outcomes, expense poll state and some health signals."""
    now = datetime.now(UTC)
    dialect = store.dialect
    when: Any = now.replace(tzinfo=None).isoformat(" ") if dialect == "sqlite" else now
    parts = {"series": _SERIES[dialect], "ago": _AGO[dialect], "org": _ORG}
    archived = "(i % 50 = 7)"
    detail = _DETAIL if dialect == "sqlite" else f"CAST({_DETAIL} AS JSONB)"
    async with store.write() as conn:
        params = {"last": letters - 1, "now": when, "orgs": orgs}
        await conn.execute(
            text(_LETTERS.format(code=_CODE, type=_TYPE, archived=archived, **parts)), params
        )
        await conn.execute(text(_DETAILS.format(detail=detail, **parts)), {"last": letters - 1})
        cast = ("", "") if dialect == "sqlite" else ("CAST((", ") AS JSONB)")
        for statement in (_CONFIGS, _OUTCOMES, _POLLS, _SIGNALS):
            await conn.execute(
                text(statement.format(open=cast[0], close=cast[1], **parts)),
                {"last": orgs - 1, "now": when, "orgs": orgs},
            )
    async with store.write() as conn:
        await conn.execute(text("ANALYZE"))


PAGES = {
    "organizations": "/console/organizations",
    "organizations, problems only, page 2": "/console/organizations?problem=problems&page=2",
    "organizations, search": "/console/organizations?q=org-99",
    "one organization": "/console/organizations/org-7",
    "dead letters by code": "/console/dead-letters",
    "dead letters by organization": "/console/dead-letters?by=org",
    "dead letters by event type": "/console/dead-letters?by=type",
    "dead letters, archived": "/console/dead-letters?archived=1",
    "dead letters, search": "/console/dead-letters?q=invoice+1999",
    "a group's messages, page 1": "/console/dead-letters/group?by=code&key=BC-ACCOUNT-MISSING",
    "a group's messages, page 200": (
        "/console/dead-letters/group?by=code&key=BC-ACCOUNT-MISSING&page=200"
    ),
    "one message": "/console/dead-letters/message?id=ev-4242",
    "replay: how many will go": "/console/dead-letters/replay?by=code&key=BC-VALIDATION",
    "polled group counts (htmx)": "/console/dead-letters",
}


@asynccontextmanager
async def console_server(store: Store) -> AsyncIterator[str]:
    settings = load_settings(_env_file=None, api_token=TOKEN)
    index = DeadLetterIndex(store)
    dead_letters = DeadLetters(settings)  # pages never touch the broker
    ctx = ConsoleContext(
        settings=settings,
        store=store,
        tokens=parse_tokens(TOKEN),
        index=index,
        operations=Operations(store, dead_letters, index),
        overview=Overview(store, index, SignalRepository(store), poll_interval_s=300),
        sessions=Sessions(store),
        limiter=SignInLimiter(store),
    )
    app = web.Application()
    add_console(app, ctx)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def measure(store: Store, runs: int = 5) -> dict[str, float]:
    """Milliseconds (best of ``runs``) of each page, signed in."""
    out: dict[str, float] = {}
    async with (
        console_server(store) as base,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        async with http.get(base + "/console/sign-in") as resp:
            found = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
            assert found
        async with http.post(
            base + "/console/sign-in", data={"token": TOKEN, "csrf": found.group(1)}
        ) as resp:
            assert resp.status == 200, resp.status
        for name, path in PAGES.items():
            headers = {"HX-Request": "true"} if "htmx" in name else {}
            best = float("inf")
            for _ in range(runs):
                started = time.perf_counter()
                async with http.get(base + path, headers=headers) as resp:
                    body = await resp.text()
                    assert resp.status == 200, (path, resp.status, body[:300])
                best = min(best, time.perf_counter() - started)
            out[name] = best * 1000
    return out


async def _run(url: str, letters: int, orgs: int) -> dict[str, float]:
    store = Store.from_url(url, secrets=SecretBox([Fernet.generate_key().decode()]))
    try:
        await store.migrate()
        started = time.perf_counter()
        await seed(store, letters, orgs)
        print(
            f"  seeded {letters:,} dead letters, {orgs:,} organizations in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        return await measure(store)
    finally:
        await store.close()


async def _fresh_pg(admin: str) -> tuple[str, Any]:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"bcsync_console_bench_{os.getpid()}"
    dsn = make_url(admin).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(dsn)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    url = make_url(admin).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False), drop


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--letters", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=1_000)
    parser.add_argument("--database", default=None, help="a PostgreSQL URL (default DATABASE_URL)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite:", file=sys.stderr)
        results["SQLite"] = await _run(
            f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args.letters, args.orgs
        )
    admin = args.database or os.environ.get(
        "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    try:
        url, drop = await _fresh_pg(admin)
    except Exception as exc:
        print(f"PostgreSQL skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        print("PostgreSQL:", file=sys.stderr)
        try:
            results["PostgreSQL"] = await _run(url, args.letters, args.orgs)
        finally:
            await drop()
    kinds = list(results)
    print(f"\n{args.letters:,} dead letters, {args.orgs:,} organizations: ms per page (best of 5)")
    print("| page | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for name in PAGES:
        print(f"| {name} | " + " | ".join(f"{results[k][name]:.0f}" for k in kinds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
