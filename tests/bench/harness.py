"""The bench's moving parts: the BC emulator, organizations with configs, worker processes,
publishing Moment events and timing the ``bc.*.exported`` answers."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from cryptography.fernet import Fernet

from tests.emulator.seed import DEMO, demo_seed
from tests.emulator.server import REPO_ROOT, ControlClient, EmulatorProcess, start_subprocess_async
from tests.support import factories as f
from worker.config.model import parse_config
from worker.config.settings import Settings, load_settings
from worker.messaging.topology import Topology
from worker.store import Store

COMPANY = DEMO.company_name
PY = sys.executable


@dataclass(frozen=True)
class Org:
    """One Moment organization with its own BC tenant (so its own limits subject)."""

    org_id: str
    tenant_id: str


@dataclass
class Event:
    """A Moment event to publish, and when its ``bc.*.exported`` answer is expected."""

    type: str
    org: str
    body: bytes
    id: str

    @property
    def exported_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bc-sync:{self.id}:exported"))


def make_event(type_: str, data: dict[str, Any], org: str) -> Event:
    event_id = str(uuid.uuid4())
    return Event(type_, org, f.body(type_, data, org=org, id_=event_id), event_id)


def tenant_of(index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bc-sync-bench-tenant-{index}"))


def _strip_ids(obj: Any) -> Any:
    """The demo company without fixed ids, so many tenants can hold a copy."""
    if isinstance(obj, dict):
        return {k: _strip_ids(v) for k, v in obj.items() if k != "id"}
    if isinstance(obj, list):
        return [_strip_ids(v) for v in obj]
    return obj


def tenants_seed(indexes: Iterable[int]) -> dict[str, Any]:
    """One tenant per index, each with the demo app and a copy of CRONUS Sverige AB."""
    base = demo_seed()["tenants"][0]
    company = _strip_ids(base["environments"][0]["companies"][0])
    tenants = []
    for i in indexes:
        tenants.append(
            {
                "id": tenant_of(i),
                "domains": [f"bench{i}.example"],
                "apps": copy.deepcopy(base["apps"]),
                "environments": [
                    {"name": DEMO.environment, "type": "Production", "companies": [company]}
                ],
            }
        )
    return {"tenants": tenants}


def org_config(tenant_id: str) -> dict[str, Any]:
    return f.exports_only(tenant_id=tenant_id, company_name=COMPANY)


# --- events -------------------------------------------------------------------------------

SEEDED_CUSTOMER = f.customer("10000", country="SE")
SEEDED_PROJECT = f.project("4005", name="Webbplats relansering", department="200")


def customer_event(org: str, number: str) -> Event:
    return make_event("moment.customer.created", {"customer": f.customer(number)}, org)


def project_event(org: str, number: str) -> Event:
    data = {"project": f.project(number, name=f"Projekt {number}", department="200")}
    return make_event("moment.project.created", data, org)


def invoice_event(org: str, number: str, lines: int) -> Event:
    line = {
        "description": "Konsulttimmar",
        "quantity": 10,
        "unit_price": 1200.0,
        "discount_percent": 0,
        "account_number": "3010",
        "vat_code": "25",
        "project": SEEDED_PROJECT,
    }
    data = {
        "invoice": f.invoice(
            number,
            cust=SEEDED_CUSTOMER,
            lines=[{**line, "description": f"Rad {n}"} for n in range(1, lines + 1)],
        )
    }
    return make_event("moment.invoice.created", data, org)


def mixed_events(orgs: Sequence[Org], count: int, tag: str) -> list[Event]:
    """40 % customers, 30 % projects, 30 % invoices (1-3 lines), round-robin over orgs."""
    events = []
    for k in range(count):
        org = orgs[k % len(orgs)].org_id
        kind = k % 10
        number = f"{tag}{k}"
        if kind < 4:
            events.append(customer_event(org, number))
        elif kind < 7:
            events.append(project_event(org, f"P{number}"))
        else:
            events.append(invoice_event(org, number, 1 + k % 3))
    return events


# --- the bench world ------------------------------------------------------------------------


@dataclass
class WorkerProc:
    process: subprocess.Popen[bytes]
    rss_samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Bench:
    """Emulator subprocess + a SQLite store of configs + helpers to run worker processes."""

    def __init__(self, amqp_url: str, work: Path, *, db_url: str | None = None) -> None:
        self.amqp_url = amqp_url
        self.work = work
        self.secret_key = Fernet.generate_key().decode()
        # BENCH_DATABASE_URL: the workers' store elsewhere (e.g. an empty PostgreSQL database,
        # to see what SQLite's thread hops cost); SQLite in the work directory by default.
        self.db_url = (
            db_url
            or os.environ.get("BENCH_DATABASE_URL")
            or f"sqlite+aiosqlite:///{work / 'bench.db'}"
        )
        self.emulator: EmulatorProcess | None = None
        self.control: ControlClient | None = None
        self.store: Store | None = None
        self.connection: AbstractRobustConnection | None = None
        self.orgs: dict[int, Org] = {}
        self.run_tag = uuid.uuid4().hex[:6]
        self._prefixes: list[str] = []
        # Another copy of the ``worker`` package (e.g. with a proposed diff applied) to run
        # the worker processes from: measures a change before and after in the same way.
        self.worker_tree: Path | None = None
        self.log_level = "INFO"
        self.tracing = "off"  # "memory": workers trace into an in-memory exporter

    @property
    def ctl(self) -> ControlClient:
        assert self.control is not None
        return self.control

    @property
    def url(self) -> str:
        assert self.emulator is not None
        return self.emulator.url

    def emulator_cpu_s(self) -> float:
        assert self.emulator is not None
        return cpu_seconds(self.emulator.process.pid)

    @property
    def ca_file(self) -> Path:
        assert self.emulator is not None
        return self.emulator.ca_file

    async def start(self) -> None:
        self.emulator = await start_subprocess_async(port=0)
        self.control = self.emulator.new_control()
        # The bench reuses organizations across scenarios: the emulator's sliding 5-minute
        # window would carry one scenario's requests into the next. Our own limiter (per
        # process, fresh per run) still applies BC's budget; scenario 5 restores the window.
        await self.ctl.set_limits(rate_limit=10**9, request_log_size=200_000)
        self.store = Store.from_url(self.db_url, settings=self.settings("bench-setup"))
        await self.store.migrate()
        self.connection = await aio_pika.connect_robust(self.amqp_url)

    async def stop(self) -> None:
        if self.connection is not None:
            channel = await self.connection.channel()
            for prefix in self._prefixes:
                for name in ("exports", "dead", "retry.1s", "retry.2s", "retry.5s"):
                    try:
                        await channel.queue_delete(f"{prefix}.{name}")
                    except Exception:
                        channel = await self.connection.channel()
                try:
                    await channel.exchange_delete(f"{prefix}.events")
                except Exception:
                    channel = await self.connection.channel()
            await self.connection.close()
        if self.store is not None:
            await self.store.close()
        if self.control is not None:
            await self.control.close()
        if self.emulator is not None:
            self.emulator.stop()

    # -- organizations

    async def ensure_orgs(self, indexes: Sequence[int]) -> list[Org]:
        """Seed a tenant per index in the emulator and save each organization's config."""
        assert self.store is not None
        new = [i for i in indexes if i not in self.orgs]
        for start in range(0, len(new), 25):
            chunk = new[start : start + 25]
            await self.ctl.seed(tenants_seed(chunk))
            for i in chunk:
                org = Org(f"bench-org-{i}", tenant_of(i))
                await self.store.configs.put(org.org_id, parse_config(org_config(org.tenant_id)))
                self.orgs[i] = org
        return [self.orgs[i] for i in indexes]

    # -- settings, topology, worker processes

    def env(self, prefix: str, *, prefetch: int = 32) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BC_SYNC_")}
        env.update(
            {
                "BC_SYNC_AMQP_URL": self.amqp_url,
                "BC_SYNC_EXCHANGE": f"{prefix}.events",
                "BC_SYNC_QUEUE_PREFIX": prefix,
                "BC_SYNC_DATABASE_URL": self.db_url,
                "BC_SYNC_BC_API_URL": self.url,
                "BC_SYNC_AUTHORITY_URL": self.url,
                "BC_SYNC_CA_FILE": str(self.ca_file),
                "BC_SYNC_CLIENT_ID": DEMO.client_id,
                "BC_SYNC_SECRET_KEY": self.secret_key,
                "BC_SYNC_HTTP_PORT": "0",
                "BC_SYNC_PREFETCH": str(prefetch),
                "BC_SYNC_RETRY_DELAYS": "1,2,5",
                "BC_SYNC_LOG_FORMAT": "json",
                "BC_SYNC_LOG_LEVEL": self.log_level,
                "BC_SYNC_SHUTDOWN_GRACE_S": "1",
                "PYTHONPATH": os.pathsep.join(
                    str(p) for p in (self.worker_tree, REPO_ROOT) if p is not None
                ),
            }
        )
        return env

    def settings(self, prefix: str) -> Settings:
        return load_settings(
            amqp_url=self.amqp_url,
            exchange=f"{prefix}.events",
            queue_prefix=prefix,
            database_url=self.db_url,
            secret_key=self.secret_key,
            retry_delays="1,2,5",
        )

    async def topology(self, prefix: str) -> Settings:
        """Declare the worker's exchange and queues for ``prefix`` (so events can queue up)."""
        assert self.connection is not None
        settings = self.settings(prefix)
        channel = await self.connection.channel()
        await Topology.from_settings(settings).apply(channel)
        await channel.close()
        self._prefixes.append(prefix)
        return settings

    def start_worker(
        self, prefix: str, *, prefetch: int = 32, profile: Path | None = None
    ) -> WorkerProc:
        """``bc-sync run --roles consume`` (under a CPU-time profiler with ``profile``)."""
        args = [PY, "-m"]
        if profile is not None or self.tracing != "off":
            args += ["tests.bench.worker_entry", "--tracing", self.tracing]
            args += ["--profile", str(profile), "--"] if profile is not None else ["--"]
        else:
            args += ["worker.cli"]
        args += ["run", "--roles", "consume"]
        log = (self.work / f"{prefix}.{len(self._prefixes)}.log").open("wb")
        proc = subprocess.Popen(
            args,
            env=self.env(prefix, prefetch=prefetch),
            cwd=self.work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return WorkerProc(proc)

    @staticmethod
    async def stop_worker(worker: WorkerProc, timeout: float = 15.0) -> None:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while worker.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    # -- publishing and collecting

    async def publish(
        self, settings: Settings, events: Sequence[Event], *, rate: float | None = None
    ) -> dict[str, float]:
        """Publish with confirms (window 100); paced at ``rate``/s when given.

        Returns the publish time (perf_counter, taken before the publish) by exported id.
        """
        assert self.connection is not None
        channel = await self.connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        window = asyncio.Semaphore(100)
        sent: dict[str, float] = {}
        tasks: list[asyncio.Task[None]] = []

        async def one(event: Event) -> None:
            try:
                await exchange.publish(
                    aio_pika.Message(
                        event.body,
                        message_id=event.id,
                        content_type="application/cloudevents+json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=event.type,
                )
            finally:
                window.release()

        started = time.perf_counter()
        for n, event in enumerate(events):
            if rate is not None:
                delay = started + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await window.acquire()
            sent[event.exported_id] = time.perf_counter()
            tasks.append(asyncio.create_task(one(event)))
        await asyncio.gather(*tasks)
        await channel.close()
        return sent

    async def collector(self, settings: Settings) -> Collector:
        assert self.connection is not None
        collector = Collector()
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.get_exchange(settings.exchange)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="bc.*.exported")
        await queue.consume(collector.on_message, no_ack=True)
        collector.channel = channel
        return collector

    async def depth(self, settings: Settings, name: str = "exports") -> int:
        assert self.connection is not None
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(settings.queue(name), passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()


class Collector:
    """Receive times of ``bc.*.exported`` events, by event id."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.channel: Any = None
        self._changed = asyncio.Event()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        if message.message_id:
            self.received.setdefault(message.message_id, time.perf_counter())
            self._changed.set()

    async def wait_for(self, ids: Iterable[str], timeout: float) -> bool:
        """True once every id was received, False at the timeout."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while not wanted.issubset(self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return True

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
