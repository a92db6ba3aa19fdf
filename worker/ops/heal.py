"""Dead letters that heal themselves: replayed automatically once their cause looks fixed.

Which dead letters: those whose cause is a setting or a record missing in BC (:data:`HEALABLE`:
posting group, dimension, dimension value, G/L account, customer, rejected credentials, and the
company / environment / published page of the settings). Everything else (invalid events,
validation errors) still needs ``bc-sync dlq replay``.

Two triggers, both in the ``poll`` role (:class:`Healer`):

- **The configuration was saved** (through the API or ``bc-sync config put``): the healer
  watches every organization's config version (one small query every few seconds) and, once
  the save is 10 s old (every worker's config cache has it), replays the organization's
  healable dead letters, once per save. The version it last acted on is kept
  in ``heal_orgs`` and advanced with a compare-and-set, so of several healer processes exactly
  one replays.
- **A probe** every ``BC_SYNC_HEAL_INTERVAL_S`` (300 s): for each organization with healable
  dead letters (under a lease ``heal/<org>``, so one process per organization), it asks BC
  whether what each dead letter misses exists now: the structured ``x-bc-missing`` facts the
  consumer writes (``{"kind": "gl_account", "value": "9999"}``) or, for rejected credentials,
  whether a token and the company list can be had. At most ``BC_SYNC_HEAL_MAX_REQUESTS`` BC
  requests per organization and round; list calls (dimensions, posting groups) serve every
  fact of their kind. A dead letter whose facts all exist is replayed.

Never twice, never a loop: replays go through :func:`worker.ops.dlq.replay` (its lock, by id),
so a dead letter is never replayed twice; the copy keeps its failure history and is marked
(``x-bc-healed``, ``x-bc-healed-at``, ``x-bc-heal-count``). If it fails again it comes back with
those marks, and the probe replays it again only after it has seen one of its facts missing
*after* that replay and present again (``heal_facts`` remembers when each fact was last seen
missing): the cause looked fixed again. A record that exists but still fails (say a blocked
account) is therefore replayed once, not every round. A save of the configuration is a person
asking again, and replays once more.

A healed event that succeeds resolves its open failure like any success, so the next digest
lists it as resolved (:class:`worker.notify.NotificationRecorder`).
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aio_pika.abc import AbstractConnection
from sqlalchemy import Column, Integer, String, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker import metrics
from worker.bc import (
    BcAuthError,
    BcConnection,
    BcError,
    BcHub,
    BcPermissionDenied,
)
from worker.config.model import IntegrationConfig
from worker.config.settings import Settings
from worker.messaging import headers as H
from worker.ops import dlq
from worker.ops.dlq.index import DeadLetterIndex
from worker.store import Store, integration_configs
from worker.store.config_cache import DEFAULT_TTL_S, ConfigCache
from worker.store.leases import Leases
from worker.store.migrations import UtcDateTime, metadata
from worker.sync.context import credentials_of

log = structlog.get_logger(__name__)

HEALABLE: frozenset[str] = frozenset(
    {
        "BC-POSTING-GROUP-MISSING",
        "BC-DIMENSION-MISSING",
        "BC-DIMENSION-VALUE-MISSING",
        "BC-ACCOUNT-MISSING",
        "BC-CUSTOMER-MISSING",
        "BC-CREDENTIALS-REJECTED",
        "BC-COMPANY-MISSING",
        "BC-ENVIRONMENT-MISSING",
        "BC-SERVICE-NOT-PUBLISHED",
    }
)
FACT_KINDS = (
    "gl_account",
    "customer",
    "gen_bus_posting_group",
    "customer_posting_group",
    "dimension",
    "dimension_value",
    "credentials",
)
_WORDS = {
    "gl_account": "G/L account",
    "customer": "customer",
    "gen_bus_posting_group": "gen. business posting group",
    "customer_posting_group": "customer posting group",
    "dimension": "dimension",
    "dimension_value": "dimension value",
}
CONFIG_CHECK_S = 5.0  # how often saved configurations are looked for
# A save is acted on once it is this old: every process's config cache (5 s) has seen it, so a
# replayed event is handled with the new settings.
SETTLE_S = 2 * DEFAULT_TTL_S
LEASE_TTL_S = 300.0
CONCURRENCY = 4  # organizations probed at once by one process
SAVED = "the integration settings were saved"

heal_orgs = Table(
    "heal_orgs",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("config_version", Integer, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)

heal_facts = Table(
    "heal_facts",
    metadata,
    Column("org_id", String(100), primary_key=True),
    Column("fact", String(300), primary_key=True),
    Column("last_missing_at", UtcDateTime),
    Column("last_present_at", UtcDateTime),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Fact:
    """One record a dead letter needs in BC."""

    kind: str
    value: str
    dimension: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.dimension}:{self.value}"[:300]

    def words(self) -> str:
        if self.kind == "credentials":
            return "the integration's credentials are accepted"
        name = f"{self.dimension} '{self.value}'" if self.dimension else f"'{self.value}'"
        return f"{_WORDS.get(self.kind, self.kind)} {name} exists"


def facts_of(letter: dlq.DeadLetter) -> tuple[Fact, ...] | None:
    """What the dead letter misses in BC, or None when the probe cannot tell (config saves
    still heal it)."""
    if letter.code == "BC-CREDENTIALS-REJECTED":
        return (Fact("credentials", ""),)
    raw = letter.headers.get(H.MISSING)
    if not isinstance(raw, list) or not raw:
        return None
    facts = []
    for item in raw:
        if not isinstance(item, Mapping):
            return None
        kind, value = dlq.jsonable(item.get("kind")), dlq.jsonable(item.get("value"))
        dimension = dlq.jsonable(item.get("dimension")) or ""
        if kind not in FACT_KINDS or not isinstance(value, str) or not value:
            return None
        if kind == "dimension_value" and not dimension:
            return None
        facts.append(Fact(str(kind), value, str(dimension)))
    return tuple(facts)


def healed_at(letter: dlq.DeadLetter) -> datetime | None:
    """When the healer last replayed this message (it came back: the heal failed)."""
    value = dlq.jsonable(letter.headers.get(H.HEALED_AT))
    if not isinstance(value, str):
        return None
    with suppress(ValueError):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _literal(org: str) -> str:
    """An organization id as a dlq filter matches it: literally, not as a glob."""
    return re.sub(r"([*?\[])", r"[\1]", org)


def heal_headers(reason: str, at: datetime) -> Callable[[dlq.DeadLetter], Mapping[str, Any]]:
    """Headers of a healed copy: its failure history kept, the heal marks added."""

    def extra(letter: dlq.DeadLetter) -> Mapping[str, Any]:
        count = dlq.jsonable(letter.headers.get(H.HEAL_COUNT))
        out: dict[str, Any] = {
            H.HEALED: reason[:500],
            H.HEALED_AT: dlq.iso(at),
            H.HEAL_COUNT: (count if isinstance(count, int) else 0) + 1,
        }
        history = letter.headers.get(H.HISTORY)
        if isinstance(history, list):
            out[H.HISTORY] = history
        return out

    return extra


# --- state in the store ------------------------------------------------------------------------


class HealState:
    """``heal_orgs`` (config versions acted on) and ``heal_facts`` (when a fact was seen)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _insert(self, table: Table) -> Any:
        return (postgresql.insert if self._store.dialect == "postgresql" else sqlite.insert)(table)

    async def config_versions(self) -> dict[str, tuple[int, datetime]]:
        """Every organization's config version and when it was saved."""
        t = integration_configs
        async with self._store.read() as conn:
            rows = await conn.execute(select(t.c.org_id, t.c.version, t.c.updated_at))
            return {r.org_id: (int(r.version), r.updated_at) for r in rows}

    async def seen_versions(self) -> dict[str, int]:
        t = heal_orgs
        async with self._store.read() as conn:
            rows = await conn.execute(select(t.c.org_id, t.c.config_version))
            return {r.org_id: int(r.config_version) for r in rows}

    async def first_seen(self, versions: Mapping[str, int], now: datetime) -> None:
        """Organizations seen for the first time: remember their versions, replay nothing."""
        if not versions:
            return
        stmt = self._insert(heal_orgs).on_conflict_do_nothing(index_elements=["org_id"])
        rows = [{"org_id": o, "config_version": v, "seen_at": now} for o, v in versions.items()]
        async with self._store.write() as conn:
            await conn.execute(stmt, rows)

    async def advance(self, org_id: str, old: int, new: int, now: datetime) -> bool:
        """Compare-and-set: True for the one process that moves ``old`` to ``new``."""
        t = heal_orgs
        async with self._store.write() as conn:
            result = await conn.execute(
                update(t)
                .where(t.c.org_id == org_id, t.c.config_version == old)
                .values(config_version=new, seen_at=now)
            )
        return bool(result.rowcount)

    async def observe(
        self, org_id: str, missing: Iterable[str], present: Iterable[str], now: datetime
    ) -> None:
        rows = [(k, "last_missing_at") for k in missing] + [(k, "last_present_at") for k in present]
        if not rows:
            return
        async with self._store.write() as conn:
            for key, column in rows:
                stmt = self._insert(heal_facts).values(org_id=org_id, fact=key, **{column: now})
                stmt = stmt.on_conflict_do_update(
                    index_elements=["org_id", "fact"], set_={column: stmt.excluded[column]}
                )
                await conn.execute(stmt)

    async def last_missing(self, org_id: str) -> dict[str, datetime]:
        t = heal_facts
        async with self._store.read() as conn:
            rows = await conn.execute(
                select(t.c.fact, t.c.last_missing_at).where(
                    t.c.org_id == org_id, t.c.last_missing_at.is_not(None)
                )
            )
            return {r.fact: r.last_missing_at for r in rows}


# --- asking BC ---------------------------------------------------------------------------------


class Budget(Exception):
    """The round's BC requests for this organization are used up."""


@dataclass
class Probe:
    """Checks facts against one organization's BC, within a request budget."""

    bc: BcConnection
    budget: int
    used: int = 0
    _dimensions: dict[str, str] | None = None
    _lists: dict[str, set[str]] = field(default_factory=dict)

    def _spend(self) -> None:
        if self.used >= self.budget:
            raise Budget
        self.used += 1

    async def _dimension_ids(self) -> dict[str, str]:
        if self._dimensions is None:
            self._spend()
            self._dimensions = {d.code.upper(): d.id for d in await self.bc.dimensions()}
        return self._dimensions

    async def _codes(self, kind: str) -> set[str]:
        if kind not in self._lists:
            self._spend()
            groups = (
                await self.bc.gen_bus_posting_groups()
                if kind == "gen_bus_posting_group"
                else await self.bc.customer_posting_groups()
            )
            self._lists[kind] = {g.code.upper() for g in groups}
        return self._lists[kind]

    async def exists(self, fact: Fact) -> bool:
        """Whether BC has the record now; raises Budget, or BcError when BC cannot tell."""
        if fact.kind == "credentials":
            self._spend()
            try:
                await self.bc.list_companies()
            except (BcAuthError, BcPermissionDenied):
                return False
            return True
        if fact.kind == "dimension":
            return fact.value.upper() in await self._dimension_ids()
        if fact.kind == "dimension_value":
            dim_id = (await self._dimension_ids()).get(fact.dimension.upper())
            if dim_id is None:
                return False
            self._spend()
            return await self.bc.find_dimension_value(dim_id, fact.value.upper()) is not None
        if fact.kind in ("gen_bus_posting_group", "customer_posting_group"):
            return fact.value.upper() in await self._codes(fact.kind)
        self._spend()
        if fact.kind == "gl_account":
            return await self.bc.account_exists(fact.value)
        if fact.kind == "customer":
            return await self.bc.find_customer(fact.value.upper()) is not None
        raise ValueError(f"unknown fact kind {fact.kind!r}")


# --- the service -------------------------------------------------------------------------------


@dataclass
class OrgRound:
    """What one probe round did for one organization."""

    org: str
    letters: int = 0
    checked: dict[str, bool] = field(default_factory=dict)
    requests: int = 0
    replayed: int = 0
    skipped_disarmed: int = 0
    error: str | None = None


class Healer:
    """The ``poll`` role's healer: config-save replays and the periodic probe."""

    name = "heal"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        configs: ConfigCache,
        hub: BcHub,
        leases: Leases,
        *,
        connection: AbstractConnection | None = None,
        clock: Callable[[], datetime] = utcnow,
        config_check_s: float = CONFIG_CHECK_S,
        lock_wait: float = dlq.LOCK_WAIT_S,
    ) -> None:
        self.settings = settings
        self.state = HealState(store)
        self.index = DeadLetterIndex(store)  # the console's dead-letter index
        self.configs = configs
        self.hub = hub
        self.leases = leases
        self.connection = connection
        self._clock = clock
        self._config_check_s = config_check_s
        self._lock_wait = lock_wait
        self.owner = f"heal-{uuid.uuid4().hex[:12]}"
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self._config_check_s, self.check_configs)),
            loop.create_task(self._every(self.settings.heal_interval_s, self.probe_once, True)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _every(self, interval: float, run: Callable[[], Any], jitter: bool = False) -> None:
        while True:
            wait = interval * (random.uniform(0.9, 1.1) if jitter else 1.0)
            await asyncio.sleep(wait)
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heal.round_failed")

    # --- trigger (a): the configuration was saved ----------------------------------------------

    async def check_configs(self) -> int:
        """Replay the healable dead letters of every organization whose config was saved since
        the last check; returns how many were replayed."""
        now = self._clock()
        current = await self.state.config_versions()
        seen = await self.state.seen_versions()
        replayed = 0
        fresh = {o: v for o, (v, _) in current.items() if o not in seen}
        await self.state.first_seen(fresh, now)
        for org, (version, saved_at) in sorted(current.items()):
            before = seen.get(org)
            if before is None or before == version:
                continue
            if saved_at > now - timedelta(seconds=SETTLE_S):
                continue  # consumers may still use the old config for a few seconds
            if not await self.state.advance(org, before, version, now):
                continue  # another healer process acts on this save
            self.configs.invalidate(org)
            letters = [
                letter
                for letter in await self._letters(org)
                if letter.code in HEALABLE and letter.org == org
            ]
            if letters:
                replayed += await self._replay(org, letters, SAVED, "config_saved")
        return replayed

    # --- trigger (b): the probe ------------------------------------------------------------------

    async def probe_once(self) -> list[OrgRound]:
        """One probe round over every organization with healable dead letters."""
        if not await self._any_dead_letters():
            return []
        by_org: dict[str, list[dlq.DeadLetter]] = {}
        for letter in await self._letters(None):
            if letter.org and letter.code in HEALABLE and facts_of(letter) is not None:
                by_org.setdefault(letter.org, []).append(letter)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(org: str, letters: list[dlq.DeadLetter]) -> OrgRound | None:
            async with gate:
                return await self._probe_org(org, letters)

        rounds = await asyncio.gather(*(one(o, ls) for o, ls in sorted(by_org.items())))
        return [r for r in rounds if r is not None]

    async def _probe_org(self, org: str, letters: list[dlq.DeadLetter]) -> OrgRound | None:
        lease = f"heal/{org}"
        owner = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        if not await self.leases.acquire(lease, owner, LEASE_TTL_S):
            return None  # another process probes this organization
        result = OrgRound(org, letters=len(letters))
        try:
            config = await self.configs.config(org)
            if config is None:
                result.error = "not configured"
                return result
            await self._check(org, config, letters, result)
            return result
        finally:
            with suppress(Exception):
                await self.leases.release(lease, owner)

    async def _check(
        self,
        org: str,
        config: IntegrationConfig,
        letters: list[dlq.DeadLetter],
        result: OrgRound,
    ) -> None:
        now = self._clock()
        probe = Probe(self._connection(config), self.settings.heal_max_requests)
        # Oldest failures first: within the budget they are checked before newer ones.
        letters = sorted(letters, key=lambda x: x.last_failure or now)
        try:
            for letter in letters:
                for fact in facts_of(letter) or ():
                    if fact.key not in result.checked:
                        result.checked[fact.key] = await probe.exists(fact)
        except Budget:
            log.info("heal.probe_budget_used", org=org, requests=probe.used)
        except BcError as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            log.info("heal.probe_inconclusive", org=org, error=result.error)
        result.requests = probe.used
        checked = result.checked
        await self.state.observe(
            org,
            [k for k, ok in checked.items() if not ok],
            [k for k, ok in checked.items() if ok],
            now,
        )
        missing_since = await self.state.last_missing(org)
        due: list[dlq.DeadLetter] = []
        found: list[Fact] = []
        for letter in letters:
            facts = facts_of(letter) or ()
            if not facts or not all(checked.get(f.key) for f in facts):
                continue
            last_heal = healed_at(letter)
            if last_heal is not None and not any(
                missing_since.get(f.key, last_heal) > last_heal for f in facts
            ):
                result.skipped_disarmed += 1  # healed once, failed again: needs a new sign
                continue
            due.append(letter)
            found += [f for f in facts if f not in found]
        if due:
            reason = "; ".join(f.words() for f in found[:5]) + " now (Business Central)"
            result.replayed = await self._replay(org, due, reason, "probe")

    def _connection(self, config: IntegrationConfig) -> BcConnection:
        return self.hub.connection(credentials_of(config, self.settings))

    # --- the dead-letter queue -----------------------------------------------------------------

    async def _any_dead_letters(self) -> bool:
        if self.connection is None:
            return True
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.settings.queue("dead"), passive=True)
            return bool(queue.declaration_result.message_count)
        except Exception:
            return True  # let the scan say what is wrong
        finally:
            with suppress(Exception):
                await channel.close()

    async def _letters(self, org: str | None) -> list[dlq.DeadLetter]:
        filters = dlq.Filters(org=_literal(org)) if org else dlq.Filters()
        return await dlq.list_dead_letters(
            self.settings, filters, connection=self.connection, lock_wait=self._lock_wait
        )

    async def _replay(
        self, org: str, letters: Sequence[dlq.DeadLetter], reason: str, trigger: str
    ) -> int:
        ids = frozenset(letter.id for letter in letters)
        started = utcnow()
        moved: list[str] = []
        result = await dlq.replay(
            self.settings,
            dlq.Filters(org=_literal(org), ids=ids),
            actor=f"heal:{trigger}",
            connection=self.connection,
            lock_wait=self._lock_wait,
            extra_headers=heal_headers(reason, self._clock()),
            settled=lambda letter: moved.append(letter.id),
        )
        if moved:
            # The console's dead-letter index forgets them now (its reconcile would, later).
            try:
                await self.index.forget(moved, indexed_before=started)
            except Exception as exc:
                log.warning("heal.index_update_failed", error=type(exc).__name__)
        metrics.child(metrics.HEALED, trigger).inc(result.replayed)
        log.info(
            "heal.replayed",
            org=org,
            trigger=trigger,
            reason=reason,
            replayed=result.replayed,
            error=result.error,
        )
        return result.replayed
