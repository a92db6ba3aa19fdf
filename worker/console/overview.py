"""What the console's organization pages show, read from the store in a few set queries (one
per table for every organization at once, never one per organization or a queue scan)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from worker.notify.store import notification_items
from worker.ops.dlq.index import DeadLetterIndex, Query
from worker.ops.signals import OrgSignals, SignalRepository
from worker.store import integration_configs, sync_outcomes, utcnow
from worker.sync.expenses import expense_polls
from worker.sync.ledger import sync_ledger
from worker.sync.payments import payment_polls

if TYPE_CHECKING:
    from worker.store import Store

OBJECT_TYPES = ("customer", "project", "invoice", "credit_note")
# Health filters of the organizations page (query value → label).
PROBLEMS = {
    "": "All organizations",
    "problems": "Any problem",
    "dead_letters": "Dead letters",
    "failures": "Open failures",
    "import": "Expense or payment import paused or lagging",
    "breaker": "Circuit breaker open",
    "throttled": "Throttled",
    "credentials": "Credentials rejected",
}
# Expense import counts as lagging when its last success is older than this many poll
# intervals.
LAG_INTERVALS = 3


@dataclass
class OrgHealth:
    org_id: str
    configured: bool = False
    company: str | None = None
    environment: str | None = None
    exports: dict[str, bool] = field(default_factory=dict)
    import_expenses: bool = False
    import_payments: bool = False
    last_success: dict[str, datetime | None] = field(default_factory=dict)
    last_failure: dict[str, tuple[datetime | None, str | None]] = field(default_factory=dict)
    open_failures: int = 0
    dead_letters: int = 0
    import_paused: bool = False
    import_lagging: bool = False
    import_last_success: datetime | None = None
    payments_paused: bool = False
    payments_lagging: bool = False
    payments_last_success: datetime | None = None
    breaker_open: bool = False
    throttled: bool = False
    credentials_rejected: bool = False

    @property
    def import_problem(self) -> bool:
        return (
            self.import_paused
            or self.import_lagging
            or self.payments_paused
            or self.payments_lagging
        )

    @property
    def problems(self) -> list[str]:
        """The problem filters this organization matches."""
        matches = {
            "dead_letters": self.dead_letters,
            "failures": self.open_failures,
            "import": self.import_problem,
            "breaker": self.breaker_open,
            "throttled": self.throttled,
            "credentials": self.credentials_rejected,
        }
        return [name for name, matched in matches.items() if matched]

    def matches(self, text: str) -> bool:
        needle = text.casefold()
        return any(
            needle in (value or "").casefold()
            for value in (self.org_id, self.company, self.environment)
        )


@dataclass(frozen=True)
class OrgPage:
    rows: list[OrgHealth]
    total: int  # organizations matching the search and filter
    page: int
    pages: int
    all_count: int


async def ledger_open_failures(store: Store, only: str | None = None) -> dict[str, int]:
    """Open failures per organization: its objects the sync ledger holds as ``failed`` (their
    last change failed and nothing newer succeeded since)."""
    t = sync_ledger
    query = select(t.c.org_id, func.count()).where(t.c.state == "failed")
    if only is not None:
        query = query.where(t.c.org_id == only)
    async with store.read() as conn:
        rows = (await conn.execute(query.group_by(t.c.org_id))).all()
    return {str(row[0]): int(row[1]) for row in rows}


class Overview:
    """Every organization's health at a glance."""

    def __init__(
        self,
        store: Store,
        index: DeadLetterIndex,
        signals: SignalRepository,
        *,
        poll_interval_s: float,
    ) -> None:
        self._store = store
        self.index = index
        self.signals = signals
        self.poll_interval_s = poll_interval_s

    async def health(self, only: str | None = None) -> dict[str, OrgHealth]:
        """Every organization's health (``only``: just that one's, with the same queries
        narrowed to it)."""
        now = utcnow()
        orgs: dict[str, OrgHealth] = {}

        def org(org_id: str) -> OrgHealth:
            found = orgs.get(org_id)
            if found is None:
                found = orgs[org_id] = OrgHealth(org_id)
            return found

        c = integration_configs
        o = sync_outcomes
        e = expense_polls

        def narrow(stmt: Any, column: Any) -> Any:
            return stmt if only is None else stmt.where(column == only)

        async with self._store.read() as conn:
            for row in await conn.execute(narrow(select(c.c.org_id, c.c.config), c.c.org_id)):
                config = row.config if isinstance(row.config, dict) else json.loads(row.config)
                h = org(row.org_id)
                h.configured = True
                h.company = config.get("company_name")
                h.environment = config.get("environment")
                h.exports = {
                    name: bool(config.get(f"export_{name}s"))
                    for name in ("customer", "project", "invoice")
                }
                h.import_expenses = bool(config.get("import_expenses"))
                h.import_payments = bool(config.get("import_payments"))
            for row in await conn.execute(
                narrow(
                    select(
                        o.c.org_id,
                        o.c.object_type,
                        o.c.last_success_at,
                        o.c.last_failure_at,
                        o.c.last_failure_code,
                    ),
                    o.c.org_id,
                )
            ):
                h = org(row.org_id)
                h.last_success[row.object_type] = row.last_success_at
                h.last_failure[row.object_type] = (row.last_failure_at, row.last_failure_code)
            lag = timedelta(seconds=self.poll_interval_s * LAG_INTERVALS)
            for row in await conn.execute(
                narrow(
                    select(e.c.org_id, e.c.paused_at, e.c.last_success_at, e.c.last_poll_at),
                    e.c.org_id,
                )
            ):
                h = org(row.org_id)
                h.import_paused = row.paused_at is not None
                h.import_last_success = row.last_success_at
                h.import_lagging = h.import_expenses and (
                    row.last_success_at is None or now - row.last_success_at > lag
                )
            pp = payment_polls
            for row in await conn.execute(
                narrow(select(pp.c.org_id, pp.c.paused_at, pp.c.last_success_at), pp.c.org_id)
            ):
                h = org(row.org_id)
                h.payments_paused = row.paused_at is not None
                h.payments_last_success = row.last_success_at
                h.payments_lagging = h.import_payments and (
                    row.last_success_at is None or now - row.last_success_at > lag
                )
        if only is None:
            for org_id, count in (await self.index.by_org()).items():
                org(org_id).dead_letters = count
            for org_id, count in (await ledger_open_failures(self._store)).items():
                org(org_id).open_failures = count
            for org_id, signals in (await self.signals.all()).items():
                self._apply(org(org_id), signals, now)
            return orgs
        count = await self.index.count(Query(org=only))
        if count:
            org(only).dead_letters = count
        failures = (await ledger_open_failures(self._store, only)).get(only)
        if failures:
            org(only).open_failures = failures
        found = await self.signals.get(only)
        if found is not None:
            self._apply(org(only), found, now)
        return orgs

    @staticmethod
    def _apply(h: OrgHealth, signals: OrgSignals, now: datetime) -> None:
        successes = [at for at in h.last_success.values() if at is not None]
        h.throttled = signals.throttled(now)
        h.breaker_open = signals.breaker_open(now)
        h.credentials_rejected = signals.credentials_rejected(max(successes, default=None))

    async def page(
        self, *, text: str = "", problem: str = "", page: int = 1, per_page: int = 50
    ) -> OrgPage:
        health = await self.health()
        rows = sorted(health.values(), key=lambda h: (not h.problems, h.org_id))
        if text:
            rows = [h for h in rows if h.matches(text)]
        if problem == "problems":
            rows = [h for h in rows if h.problems]
        elif problem:
            rows = [h for h in rows if problem in h.problems]
        pages = max(1, -(-len(rows) // per_page))
        page = min(max(1, page), pages)
        start = (page - 1) * per_page
        return OrgPage(rows[start : start + per_page], len(rows), page, pages, len(health))

    async def one(self, org_id: str) -> OrgHealth | None:
        return (await self.health(org_id)).get(org_id)

    async def stored_config(self, org_id: str) -> dict[str, Any] | None:
        """The organization's configuration as stored: never holds the secret (that is in its
        own encrypted column, which is not read here)."""
        c = integration_configs
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    select(c.c.config, c.c.version, c.c.created_at, c.c.updated_at).where(
                        c.c.org_id == org_id
                    )
                )
            ).first()
        if row is None:
            return None
        config = row.config if isinstance(row.config, dict) else json.loads(row.config)
        config = {k: v for k, v in config.items() if "secret" not in k}
        return {
            "config": config,
            "version": row.version,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }

    async def recent_notifications(self, org_id: str, limit: int = 20) -> list[dict[str, Any]]:
        t = notification_items
        async with self._store.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        t.c.kind,
                        t.c.code,
                        t.c.object_type,
                        t.c.moment_number,
                        t.c.message,
                        t.c.occurred_at,
                        t.c.resolved_at,
                    )
                    .where(t.c.org_id == org_id)
                    .order_by(t.c.occurred_at.desc())
                    .limit(limit)
                )
            ).all()
        return [row._asdict() for row in rows]
