"""The soak engine: publish a mix of Moment events for several organizations, break things while
worker processes handle them, then drain and count against the emulator's state and the queues.

Every organization has its own BC tenant in the emulator (its own limits) and its own config in
the shared store. Events: customers, projects and invoices, some published twice (duplicates),
some before the objects they refer to (out of order), a few that can never succeed (bad). Chaos:
SIGKILL of worker processes (restarted), cut broker connections (a TCP proxy in front of the
broker), broker outages (the proxy refuses connections for a while), BC outages (every request
answers 503 for a while), and random BC faults (5xx, 429, hanging requests) all along.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from cryptography.fernet import Fernet
from sqlalchemy import select

from tests.chaos.proxy import OutageProxy
from tests.emulator.seed import DEMO, _sverige
from tests.emulator.server import CompanyRef, ControlClient
from tests.support import factories as f
from worker.config.crypto import SecretBox
from worker.config.model import parse_config
from worker.config.settings import load_settings
from worker.messaging import headers as H
from worker.messaging.connection import connect_robust
from worker.messaging.topology import Topology
from worker.notify.store import notification_digests, notification_items
from worker.store import Store

REPO = Path(__file__).resolve().parents[2]
CUST = "moment.customer.created"
PROJ = "moment.project.created"
INV = "moment.invoice.created"
CUST_UPD = "moment.customer.updated"
PROJ_UPD = "moment.project.updated"


class ClusterControl(Protocol):
    """What the soak needs of :class:`tests.chaos.cluster.Cluster`."""

    @property
    def nodes(self) -> Sequence[Any]: ...

    def leader(self, queue: str) -> Any: ...

    def leaders(self) -> dict[str, int]: ...

    def stop_node(self, node: Any) -> None: ...

    def start_node(self, node: Any) -> None: ...


class DatabaseControl(Protocol):
    """A PostgreSQL server of the soak's own that it may stop and start."""

    def stop(self) -> None: ...

    def start(self) -> None: ...


@dataclass
class SoakConfig:
    """One soak run. Rates are fractions of the events (or of BC requests for faults)."""

    amqp_url: str
    emulator_url: str
    ca_file: Path
    events: int = 1000
    orgs: int = 5
    workers: int = 1
    kills: int = 5
    cuts: int = 3
    broker_outages: int = 0
    broker_outage_s: float = 6.0
    # RabbitMQ itself stopped and started (rabbitmqctl stop_app / start_app) once everything is
    # published: only where the broker is this run's alone, never in the shared CI broker.
    broker_restarts: int = 0
    bc_outage_s: float = 0.0  # > 0: every BC request answers 503 for this long, mid-run
    duplicates: float = 0.05
    out_of_order: float = 0.05
    # Updates of existing customers and projects (this share of the events), ``versions`` per
    # object, published in a shuffled order: BC must end with the newest version of each.
    updates: float = 0.1
    versions: int = 4
    bad: float = 0.01
    clean_orgs: int = 1  # the last organizations get no bad events (and must get no mail)
    fault_5xx: float = 0.10
    fault_429: float = 0.05
    fault_hang: float = 0.02
    # The Retry-After of the injected 429s. Each one halves the organization's concurrency and
    # pauses it that long, so at 5 % of requests it sets the pace: short, like the ladder.
    retry_after_s: float = 1.0
    chaos_every_s: tuple[float, float] = (1.5, 4.0)
    retry_delays: str = "0.5,1,2,3,4,5,5,5,5,5,5,5"
    bc_timeout_s: float = 3.0
    claim_ttl_s: float = 15.0
    prefetch: int = 16
    # Notifications: every worker also runs the notify role; one digest per organization per
    # window, the first one a second after a quiet period's first failure.
    digest_first_delay_s: float = 1.0
    digest_window_s: float = 20.0
    # The retry watch (worker/messaging/retry_watch.py): an event the broker drops on the
    # ladder is published again this long after its wait (sooner once the queues are empty).
    retry_watch_grace_s: float = 10.0
    retry_watch_interval_s: float = 2.0
    database_url: str | None = None  # default: a SQLite file shared by the workers
    # A RabbitMQ cluster (tests/chaos/cluster.py): the workers get every node's address
    # (``amqp_url`` comma-separated, no proxy: no cuts or proxy outages then) and ``node_stops``
    # times the node leading the exports queue is stopped for ``broker_outage_s``, then started.
    cluster: ClusterControl | None = None
    node_stops: int = 0
    # PostgreSQL stopped for ``db_outage_s`` under load, ``db_outages`` times (``database``
    # controls that server; only a server of the soak's own, never a shared one).
    database: DatabaseControl | None = None
    db_outages: int = 0
    db_outage_s: float = 8.0
    timeout_s: float = 600.0
    seed: int = 9
    work_dir: Path | None = None
    log: Callable[[str], None] = print


@dataclass
class NodeStop:
    node: str
    was_leader: bool  # it led the exports queue when stopped
    leader_s: float = math.nan  # until the exports queue had a leader on another node
    consuming_s: float = math.nan  # until every worker's consumer was back on the queue
    restart_s: float = math.nan  # from the start command until the node ran again


@dataclass
class DbOutage:
    down_s: float
    unready_workers: int  # workers whose readiness reported the store down during it
    ready_after_s: float = math.nan  # from the start until every worker was ready again
    began: datetime | None = None
    ended: datetime | None = None
    # Deliveries that failed on the store meanwhile and went on the ladder (from the logs).
    laddered: int = 0


@dataclass
class SoakReport:
    events: int = 0  # messages published (duplicates included)
    distinct: int = 0
    good: int = 0
    bad: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    updates: int = 0  # update events of customers and projects, in a shuffled order
    updated_objects: int = 0
    stale: int = 0  # objects BC holds in an older version than the newest published
    kills: int = 0
    cuts: int = 0
    broker_outages: int = 0
    broker_restarts: int = 0
    # Cluster mode: each stop of a node (the exports queue's leader first), with the seconds
    # until the queue had a new leader, until every worker consumed again, and the restart.
    node_stops: list[NodeStop] = field(default_factory=list)
    leaders: dict[str, int] = field(default_factory=dict)  # queues each node led at the start
    # Bad events dead-lettered while PostgreSQL was down: no mail expected (see _unnotifiable).
    unnotified: set[str] = field(default_factory=set)
    recovered: int = 0  # events the retry watch published again (the broker dropped them)
    # PostgreSQL outages: seconds down, and what readiness said meanwhile and after.
    db_outages: list[DbOutage] = field(default_factory=list)
    bc_outage_s: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    wrong_content: int = 0
    dead_lettered: int = 0
    dead_unexpected: int = 0
    retry_left: int = 0
    exports_left: int = 0
    unready_during_outage: int = 0
    mails: int = 0  # digest mails in the outbox
    mailed_orgs: int = 0
    dirty_orgs: int = 0  # organizations with bad events
    mail_windows: int = 0  # windows with failures, summed over the organizations
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)  # BC 503 stretches
    worker_restarts: int = 0
    wall_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds from the start, when done
    problems: list[str] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)  # worker logs and mails
    secrets: list[str] = field(default_factory=list)  # the organizations' client secrets

    @property
    def ok(self) -> bool:
        return not self.problems

    def verdict(self, title: str) -> int:
        """Print the figures and the problems; the exit status of a command-line run."""
        print(f"\n== {title} ==")
        print(self.figures())
        for problem in self.problems[:50]:
            print(f"PROBLEM: {problem}")
        print("PASSED" if self.ok else f"FAILED ({len(self.problems)} problems)")
        return 0 if self.ok else 1

    def figures(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        return "\n".join(
            [
                f"events published   {self.events} ({self.distinct} distinct: {self.good} good, "
                f"{self.bad} bad; {self.duplicates} duplicates, {self.out_of_order} out of order)",
                f"updates            {self.updates} of {self.updated_objects} customers and "
                f"projects, shuffled; stale {self.stale}",
                f"kills              {self.kills} (SIGKILL, worker restarted)",
                f"broker cuts        {self.cuts}; broker outages {self.broker_outages}; "
                f"broker restarts {self.broker_restarts}",
                *(
                    [
                        "queue leaders      "
                        + ", ".join(f"{k.split('@')[0]} {v}" for k, v in self.leaders.items()),
                        f"node stops         {len(self.node_stops)}: "
                        + "; ".join(
                            f"{n.node.split('@')[0]}{' (exports leader)' if n.was_leader else ''}"
                            f" new leader {n.leader_s:.1f} s, all consuming {n.consuming_s:.1f} "
                            f"s, restarted in {n.restart_s:.1f} s"
                            for n in self.node_stops
                        ),
                    ]
                    if self.node_stops
                    else []
                ),
                *(
                    [
                        f"database outages   {len(self.db_outages)}: "
                        + "; ".join(
                            f"{o.down_s:.0f} s down, {o.laddered} deliveries failed on the "
                            f"store and went on the ladder, {o.unready_workers} worker(s) "
                            f"reported the store down, all ready {o.ready_after_s:.1f} s after"
                            f", {len(self.unnotified)} bad event(s) dead-lettered meanwhile "
                            "(no digest record possible)"
                            for o in self.db_outages
                        )
                    ]
                    if self.db_outages
                    else []
                ),
                f"BC outage          {self.bc_outage_s:.0f} s of 503 "
                f"(readiness lost {self.unready_during_outage} times)",
                f"faults injected    {faults}",
                f"lost               {self.lost} "
                f"(published again by the retry watch: {self.recovered})",
                f"duplicated         {self.duplicated}",
                f"wrong content      {self.wrong_content}",
                f"dead-lettered      {self.dead_lettered} (unexpected {self.dead_unexpected})",
                f"mails              {self.mails} digests to {self.mailed_orgs} of "
                f"{self.dirty_orgs} organizations with bad events ({self.mail_windows} windows "
                "with failures), 0 expected to the others",
                f"left on ladder     {self.retry_left}; left in exports {self.exports_left}",
                f"wall time          {self.wall_s:.1f} s ("
                + ", ".join(f"{k} {v:.0f}" for k, v in self.phases.items())
                + ")",
            ]
        )


# --- the world: organizations, their tenants, and the events ------------------------------------


@dataclass
class Org:
    index: int
    org_id: str
    tenant_id: str
    secret: str

    @property
    def ref(self) -> CompanyRef:
        return CompanyRef(self.tenant_id, DEMO.environment, DEMO.company_name)


def make_orgs(n: int, run: str) -> list[Org]:
    return [
        Org(
            index=i,
            org_id=f"chaos-{run}-{i}",
            tenant_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bc-sync-chaos:{run}:{i}")),
            secret=f"chaos-secret-{run}-{i}-{uuid.uuid4().hex[:12]}",
        )
        for i in range(n)
    ]


def seed_for(orgs: list[Org]) -> dict[str, Any]:
    return {
        "tenants": [
            {
                "id": o.tenant_id,
                "apps": [{"client_id": DEMO.client_id, "secret": o.secret, "enabled_in_bc": True}],
                "environments": [
                    {"name": DEMO.environment, "type": "Production", "companies": [_sverige()]}
                ],
            }
            for o in orgs
        ]
    }


def config_for(org: Org) -> dict[str, Any]:
    return f.exports_only(
        tenant_id=org.tenant_id,
        client_secret=org.secret,
        company_name=DEMO.company_name,
        notification_recipients=[f"bc-admin-{org.index}@example.com"],
    )


@dataclass
class Planned:
    """One distinct event and what BC must hold afterwards."""

    org: Org
    event_id: str
    type: str
    body: bytes
    bad_code: str | None = None  # the dead-letter code of a bad event


@dataclass
class Expected:
    """Per organization: the records BC must hold, by key."""

    customers: dict[str, str] = field(default_factory=dict)  # number → name
    projects: dict[str, str] = field(default_factory=dict)  # code → name
    invoices: dict[str, float] = field(default_factory=dict)  # number → total excl. tax
    bad_invoices: set[str] = field(default_factory=set)
    bad_customers: set[str] = field(default_factory=set)
    # Names of the older versions of updated objects: BC holding one of them is stale.
    older_names: set[str] = field(default_factory=set)
    # Customers only a bad invoice refers to: it may create them before it fails (allowed once).
    optional_customers: set[str] = field(default_factory=set)


def plan(
    cfg: SoakConfig, orgs: list[Org], rng: random.Random
) -> tuple[list[Planned], dict[str, Expected], int]:
    """The events in publishing order (duplicates included), what BC must hold, and how many
    were moved ahead of what they refer to."""
    per_org = {o.org_id: Expected() for o in orgs}
    streams: list[list[Planned]] = []
    moved = 0
    for org in orgs:
        n = cfg.events // len(orgs) + (1 if org.index < cfg.events % len(orgs) else 0)
        exp = per_org[org.org_id]
        customers: list[dict[str, Any]] = []
        projects: list[dict[str, Any]] = []
        stream: list[Planned] = []
        invoices: list[Planned] = []
        k = 0
        while len(stream) + len(invoices) < n:
            k += 1
            roll = rng.random()
            if roll < 0.4 or not customers:
                number = f"C{org.index}X{k}"
                c = f.customer(number, name=f"Kund {number} AB")
                customers.append(c)
                exp.customers[number] = c["name"]
                stream.append(_event(org, CUST, {"customer": c}))
            elif roll < 0.6 or not projects:
                number = f"P{org.index}X{k}"
                p = f.project(number, name=f"Projekt {number}", department="200", cust=None)
                p["customer"] = rng.choice(customers)
                projects.append(p)
                exp.projects[number] = p["name"]
                stream.append(_event(org, PROJ, {"project": p}))
            else:
                number = f"I{org.index}X{k}"
                c = rng.choice(customers)
                lines = []
                total = 0.0
                for j in range(rng.randint(1, 3)):
                    qty, price = rng.randint(1, 20), float(rng.randint(100, 2000))
                    total += qty * price
                    lines.append(
                        {
                            "description": f"Rad {j + 1}",
                            "quantity": qty,
                            "unit_price": price,
                            "discount_percent": 0,
                            "account_number": "3010",
                            "vat_code": "25",
                            "project": rng.choice(projects),
                        }
                    )
                inv = f.invoice(number, cust=c, lines=lines)
                exp.invoices[number] = round(total, 2)
                invoices.append(_event(org, INV, {"invoice": inv}))
        stream.extend(invoices)
        rng.shuffle(invoices)
        # Invoices come after what they refer to, except the out-of-order ones: moved first.
        stream = [e for e in stream if e.type != INV]
        late = list(invoices)
        ahead = [late.pop() for _ in range(min(len(late), round(n * cfg.out_of_order)))]
        moved += len(ahead)
        stream = ahead + stream + late
        # Bad events replace some good ones: an account missing in BC, a number BC cannot hold.
        dirty = max(1, len(orgs) - cfg.clean_orgs)
        n_bad = max(1, math.ceil(n * cfg.bad * len(orgs) / dirty)) if cfg.bad > 0 else 0
        if org.index >= dirty:
            n_bad = 0
        for b in range(n_bad):
            i = rng.randrange(len(stream))
            if b % 2 == 0:
                number = f"B{org.index}X{b}"
                c = rng.choice(customers)
                inv = f.invoice(number, cust=c)
                inv["lines"][0]["account_number"] = "9999"
                inv["lines"][0]["project"] = rng.choice(projects)
                exp.bad_invoices.add(number)
                stream[i] = _event(org, INV, {"invoice": inv}, bad="BC-ACCOUNT-MISSING")
            else:
                number = f"BAD{org.index}X{b}" + "9" * 20
                exp.bad_customers.add(number)
                stream[i] = _event(org, CUST, {"customer": f.customer(number)}, bad="BC-VALIDATION")
        _add_updates(cfg, rng, org, exp, stream, customers, projects)
        streams.append(stream)
    _drop_replaced(streams, per_org)
    # Interleave the organizations' streams, keeping each one's order.
    out: list[Planned] = []
    cursors = [0] * len(streams)
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        i = rng.choice([i for i, s in enumerate(streams) if cursors[i] < len(s)])
        out.append(streams[i][cursors[i]])
        cursors[i] += 1
    return out, per_org, moved


def _add_updates(
    cfg: SoakConfig,
    rng: random.Random,
    org: Org,
    exp: Expected,
    stream: list[Planned],
    customers: list[dict[str, Any]],
    projects: list[dict[str, Any]],
) -> None:
    """Versions 1..N of some customers and projects (times in that order, after every other
    event of the organization), each put somewhere after its object's first event, shuffled."""
    if cfg.updates <= 0 or cfg.versions < 1:
        return
    wanted = round(len(stream) * cfg.updates / cfg.versions)
    pool = [("customer", c) for c in customers] + [("project", p) for p in projects]
    start = datetime.now(UTC) + timedelta(seconds=1)
    for n, (kind, obj) in enumerate(rng.sample(pool, min(wanted, len(pool)))):
        versions: list[Planned] = []
        for v in range(1, cfg.versions + 1):
            name = f"{obj['name']} v{v}"
            when = (start + timedelta(milliseconds=n * cfg.versions + v)).isoformat()
            if kind == "customer":
                data = {"customer": {**obj, "name": name}}
                versions.append(_event(org, CUST_UPD, data, time=when.replace("+00:00", "Z")))
            else:
                data = {"project": {**obj, "name": name}}
                versions.append(_event(org, PROJ_UPD, data, time=when.replace("+00:00", "Z")))
            if v < cfg.versions:
                exp.older_names.add(name)
        target = exp.customers if kind == "customer" else exp.projects
        target[obj["number"]] = f"{obj['name']} v{cfg.versions}"
        rng.shuffle(versions)
        first = next(
            (i for i, e in enumerate(stream) if _number_of(e) == obj["number"]), len(stream) - 1
        )
        for e in versions:
            stream.insert(rng.randint(first + 1, len(stream)), e)


def _drop_replaced(streams: list[list[Planned]], per_org: dict[str, Expected]) -> None:
    """A good event overwritten by a bad one no longer produces its record, unless another
    event (an invoice's snapshot) still does."""
    for stream in streams:
        if not stream:
            continue
        org = stream[0].org.org_id
        exp = per_org[org]
        present_c: set[str] = set()
        present_p: set[str] = set()
        present_i: set[str] = set()
        for e in stream:
            if e.bad_code:
                continue
            data = json.loads(e.body)["data"]
            if e.type in (CUST, CUST_UPD):
                present_c.add(data["customer"]["number"])
            elif e.type in (PROJ, PROJ_UPD):
                present_p.add(data["project"]["number"])
            else:
                inv = data["invoice"]
                present_i.add(inv["number"])
                present_c.add(inv["customer"]["number"])
                present_p.update(line["project"]["number"] for line in inv["lines"])
        exp.customers = {k: v for k, v in exp.customers.items() if k in present_c}
        exp.projects = {k: v for k, v in exp.projects.items() if k in present_p}
        exp.invoices = {k: v for k, v in exp.invoices.items() if k in present_i}
        exp.optional_customers = {
            json.loads(e.body)["data"]["invoice"]["customer"]["number"]
            for e in stream
            if e.bad_code == "BC-ACCOUNT-MISSING"
        } - present_c


def _event(
    org: Org,
    type_: str,
    data: dict[str, Any],
    *,
    bad: str | None = None,
    time: str | None = None,
) -> Planned:
    event_id = str(uuid.uuid4())
    body = f.body(type_, data, org=org.org_id, id_=event_id, time=time)
    return Planned(org, event_id, type_, body, bad)


# --- processes and plumbing -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workers:
    """Worker subprocesses (``tests.chaos.worker``): start, SIGKILL and restart, stop."""

    def __init__(self, env: dict[str, str], count: int, log_dir: Path) -> None:
        self.env = env
        self.count = count
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.ports = [_free_port() for _ in range(count)]
        self.starts = 0
        self.logs: list[Path] = []
        self.lock = threading.Lock()  # kill (in a thread) against the settle loop's restarts

    def start(self, i: int) -> None:
        self.starts += 1
        log = self.log_dir / f"worker-{i}-{self.starts}.log"
        self.logs.append(log)
        env = {**self.env, "BC_SYNC_HTTP_PORT": str(self.ports[i])}
        with log.open("wb") as out:
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.worker"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def start_all(self) -> None:
        for i in range(self.count):
            self.start(i)

    def kill(self, i: int) -> None:
        # Under the lock: the settle loop must not see the killed one as crashed and start a
        # second process for the same slot (an orphan holding the slot's HTTP port).
        with self.lock:
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            self.start(i)

    def restart_crashed(self) -> list[int]:
        """Restart the workers that exited by themselves (a crash loop shows up here)."""
        with self.lock:
            gone = [i for i, p in enumerate(self.procs) if p is not None and p.poll() is not None]
            for i in gone:
                self.start(i)
        return gone

    def stop_all(self, timeout: float = 40.0) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = [None] * self.count


async def _ready(port: int) -> bool:
    body = await _readiness(port)
    return body is not None and body.get("status") == "ready"


def _proxied(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def _depths(channel: aio_pika.abc.AbstractChannel, names: list[str]) -> dict[str, int]:
    out = {}
    for name in names:
        q: aio_pika.abc.AbstractQueue
        if isinstance(channel, aio_pika.abc.AbstractRobustChannel):
            # Not robust: a robust channel answers a passive declare of a queue it knows from
            # its cache, with the message count of the first declare.
            q = await channel.declare_queue(name, passive=True, robust=False)
        else:
            q = await channel.declare_queue(name, passive=True)
        out[name] = int(q.declaration_result.message_count or 0)
    return out


# --- the run ------------------------------------------------------------------------------------


async def run_soak(cfg: SoakConfig) -> SoakReport:
    """Run one soak and return its figures; ``report.problems`` lists every failed check."""
    started = time.monotonic()
    rng = random.Random(cfg.seed)
    report = SoakReport()
    run = uuid.uuid4().hex[:8]
    work = cfg.work_dir or Path(tempfile.mkdtemp(prefix="bc-sync-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    orgs = make_orgs(cfg.orgs, run)
    report.secrets = [o.secret for o in orgs]
    key = Fernet.generate_key().decode()
    db_url = cfg.database_url or f"sqlite+aiosqlite:///{work / 'bc-sync.db'}"
    settings = load_settings(
        _env_file=None,
        amqp_url=cfg.amqp_url,
        queue_prefix=f"chaos-{run}",
        exchange=f"chaos-{run}.events",
        database_url=db_url,
        retry_delays=cfg.retry_delays,
        secret_key=key,
    )
    topo = Topology.from_settings(settings)
    control = ControlClient(cfg.emulator_url, cfg.ca_file)
    if cfg.cluster is None:
        broker = urlsplit(cfg.amqp_url)
        proxy = OutageProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
        await proxy.start()
        worker_amqp = _proxied(cfg.amqp_url, proxy.port)
    else:  # every node's address, straight: the node stops are the broker's chaos
        proxy = None
        worker_amqp = cfg.amqp_url
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BC_SYNC_")},
        "BC_SYNC_AMQP_URL": worker_amqp,
        "BC_SYNC_EXCHANGE": settings.exchange,
        "BC_SYNC_QUEUE_PREFIX": settings.queue_prefix,
        "BC_SYNC_DATABASE_URL": db_url,
        "BC_SYNC_BC_API_URL": cfg.emulator_url,
        "BC_SYNC_AUTHORITY_URL": cfg.emulator_url,
        "BC_SYNC_CA_FILE": str(cfg.ca_file),
        "BC_SYNC_CLIENT_ID": DEMO.client_id,
        "BC_SYNC_SECRET_KEY": key,
        "BC_SYNC_RETRY_DELAYS": cfg.retry_delays,
        "BC_SYNC_PREFETCH": str(cfg.prefetch),
        "BC_SYNC_LOG_FORMAT": "json",
        "BC_SYNC_LOG_LEVEL": "INFO",
        "BC_SYNC_SHUTDOWN_GRACE_S": "15",
        "BC_SYNC_OUTBOX_DIR": str(work / "outbox"),
        "CHAOS_BC_TIMEOUT_S": str(cfg.bc_timeout_s),
        "CHAOS_CLAIM_TTL_S": str(cfg.claim_ttl_s),
        "CHAOS_ROLES": "consume,notify",
        "BC_SYNC_DIGEST_FIRST_DELAY_S": str(cfg.digest_first_delay_s),
        "BC_SYNC_DIGEST_WINDOW_S": str(cfg.digest_window_s),
        "BC_SYNC_RETRY_WATCH_GRACE_S": str(cfg.retry_watch_grace_s),
        "BC_SYNC_RETRY_WATCH_INTERVAL_S": str(cfg.retry_watch_interval_s),
        "PYTHONPATH": str(REPO),
    }
    workers = Workers(env, cfg.workers, work)
    # Robust, over every address: a broker restart or a node stop must not end the soak's own
    # view of the queues.
    connection = await connect_robust(settings, name="bc-sync chaos soak", reconnect_interval=1.0)
    try:
        # The world: tenants in the emulator, configs in the store, the topology.
        await control.seed(seed_for(orgs))
        store = Store.from_url(db_url, secrets=SecretBox([key]))
        await store.migrate()
        for org in orgs:
            await store.configs.put(org.org_id, parse_config(config_for(org)))
        await store.close()
        channel = await connection.channel(publisher_confirms=True)
        await topo.apply(channel)
        if cfg.cluster is not None:
            report.leaders = await asyncio.to_thread(cfg.cluster.leaders)
        exchange = await channel.get_exchange(settings.exchange)
        fault_ids = await _add_faults(control, cfg, orgs)

        events, expected, moved = plan(cfg, orgs, rng)
        dups = [e for e in events if not e.bad_code and rng.random() < cfg.duplicates]
        order: list[Planned] = list(events)
        for d in dups:  # each duplicate goes somewhere after its original
            at = order.index(d)
            order.insert(rng.randint(at + 1, len(order)), d)
        report.distinct, report.duplicates, report.out_of_order = len(events), len(dups), moved
        report.updates = sum(1 for e in events if e.type in (CUST_UPD, PROJ_UPD))
        report.updated_objects = sum(
            len({_number_of(e) for e in events if e.type in (CUST_UPD, PROJ_UPD) and e.org is o})
            for o in orgs
        )
        report.bad = sum(1 for e in events if e.bad_code)
        report.good = report.distinct - report.bad
        report.events = len(order)
        cfg.log(
            f"chaos: {report.events} events for {cfg.orgs} organizations, {cfg.workers} "
            f"worker process(es), work dir {work}"
        )

        def phase(name: str) -> None:
            report.phases[name] = time.monotonic() - started

        phase("setup")
        workers.start_all()
        publisher = asyncio.create_task(_publish(exchange, order))
        chaos = asyncio.create_task(
            _chaos(cfg, rng, workers, proxy, control, report, publisher, connection, topo)
        )
        publisher.add_done_callback(lambda _: phase("published"))
        chaos.add_done_callback(lambda _: phase("chaos"))
        done = await _wait_until_settled(
            cfg,
            control,
            connection,
            topo,
            orgs,
            expected,
            report,
            workers,
            started,
            [publisher, chaos],
        )
        chaos.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        await publisher
        phase("settled")
        if not done:
            report.problems.append(f"not settled within {cfg.timeout_s:.0f} s")
        if proxy is not None:
            proxy.up()
        for r in await control.faults():
            if int(r["id"]) in fault_ids:
                name = f"{r['status']}" if r["kind"] == "status" else r["kind"]
                report.faults[name] = report.faults.get(name, 0) + int(r["applied"])
        await control.clear_faults()
        report.unnotified = _unnotifiable(workers.logs, report.db_outages)
        report.recovered = sum(
            log.read_bytes().count(b'"event":"retry_watch.recovered"') for log in workers.logs
        )
        await _wait_for_digests(cfg, db_url, key, events, report.unnotified)
        phase("mailed")
        await _stop_drained(cfg, workers, connection, topo)
        phase("stopped")
        await _verify(cfg, control, connection, topo, orgs, events, expected, report)
        await _verify_mails(cfg, work / "outbox", db_url, key, orgs, events, report)
        phase("verified")
    finally:
        workers.stop_all()
        if proxy is not None:
            proxy.up()
            report.cuts = proxy.cuts
            report.broker_outages = proxy.outages
            await proxy.stop()
        await _drop(connection, topo)
        await connection.close()
        await control.close()
    report.worker_restarts = workers.starts - cfg.workers
    report.log_files = [*workers.logs, *sorted((work / "outbox").glob("*.eml"))]
    for outage in report.db_outages:
        outage.laddered = _laddered(workers.logs, outage)
    report.wall_s = time.monotonic() - started
    return report


async def _add_faults(control: ControlClient, cfg: SoakConfig, orgs: list[Org]) -> list[int]:
    ids: list[int] = []
    specs: list[dict[str, Any]] = []
    if cfg.fault_5xx:
        specs += [
            {"kind": "status", "status": 500, "probability": cfg.fault_5xx / 3},
            {"kind": "status", "status": 502, "probability": cfg.fault_5xx / 3},
            {"kind": "status", "status": 503, "probability": cfg.fault_5xx / 3},
        ]
    if cfg.fault_429:
        specs.append(
            {
                "kind": "status",
                "status": 429,
                "probability": cfg.fault_429,
                "retry_after": cfg.retry_after_s,
            }
        )
    if cfg.fault_hang:
        specs.append({"kind": "hang", "probability": cfg.fault_hang})
    for i, spec in enumerate(specs):
        kind = spec.pop("kind")
        rule = await control.add_fault(kind, seed=cfg.seed + i, **spec)
        ids.append(int(rule["id"]))
    return ids


async def _publish(exchange: aio_pika.abc.AbstractExchange, order: list[Planned]) -> None:
    """Publish like Moment: persistent, confirmed, in order, a few in flight at a time."""
    window = 50
    for start in range(0, len(order), window):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        e.body,
                        content_type="application/cloudevents+json",
                        message_id=e.event_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=e.type,
                    mandatory=True,
                )
                for e in order[start : start + window]
            )
        )


async def _chaos(
    cfg: SoakConfig,
    rng: random.Random,
    workers: Workers,
    proxy: OutageProxy | None,
    control: ControlClient,
    report: SoakReport,
    publisher: asyncio.Task[None],
    connection: aio_pika.abc.AbstractConnection,
    topo: Topology,
) -> None:
    """Kills, cuts, outages, in random order at random moments, until each count is reached."""
    todo = (
        ["kill"] * cfg.kills
        + ["cut"] * cfg.cuts
        + ["broker_outage"] * cfg.broker_outages
        + ["broker_restart"] * cfg.broker_restarts
        + (["bc_outage"] if cfg.bc_outage_s > 0 else [])
        + (["db_outage"] * cfg.db_outages if cfg.database is not None else [])
    )
    if (cfg.cuts or cfg.broker_outages) and proxy is None:
        raise ValueError("broker cuts and outages need the proxy: not in cluster mode")
    rng.shuffle(todo)
    # Node stops in a row, the exports leader first, then another: after every other action,
    # since they wait for the last publish (as a broker restart does).
    todo += ["node_stop"] * (cfg.node_stops if cfg.cluster is not None else 0)
    await asyncio.sleep(rng.uniform(*cfg.chaos_every_s))
    for action in todo:
        if action == "kill":
            victim = rng.randrange(workers.count)
            await asyncio.to_thread(workers.kill, victim)
            report.kills += 1
            cfg.log(f"chaos: SIGKILL worker {victim} (kill {report.kills})")
        elif action == "cut" and proxy is not None:
            proxy.cut()
            cfg.log(f"chaos: cut broker connections (cut {proxy.cuts})")
        elif action == "broker_restart":
            # After the last publish: a confirm lost in the restart would make Moment publish
            # again, which the soak does not model. The queues are full: that is the load.
            await asyncio.wait([publisher])
            await _broker_restart(cfg, report)
        elif action == "node_stop" and cfg.cluster is not None:
            await asyncio.wait([publisher])
            await _node_stop(cfg, cfg.cluster, workers, connection, topo, report)
        elif action == "db_outage" and cfg.database is not None:
            await _db_outage(cfg, cfg.database, workers, report)
        elif action == "broker_outage" and proxy is not None:
            proxy.down()
            cfg.log(f"chaos: broker unreachable for {cfg.broker_outage_s:.0f} s")
            await asyncio.sleep(cfg.broker_outage_s)
            proxy.up()
        else:
            await _bc_outage(cfg, workers, control, report)
        await asyncio.sleep(rng.uniform(*cfg.chaos_every_s))


async def _node_stop(
    cfg: SoakConfig,
    cluster: ClusterControl,
    workers: Workers,
    connection: aio_pika.abc.AbstractConnection,
    topo: Topology,
    report: SoakReport,
) -> None:
    """Stop the node leading the exports queue (or, when that one was stopped last time,
    another), measure until the queue has a leader elsewhere and every worker's consumer is
    back, keep it down ``broker_outage_s``, start it, measure until it runs again."""
    queue = topo.exports.name
    leader = await asyncio.to_thread(cluster.leader, queue)
    stopped_before = {s.node for s in report.node_stops[-1:]}
    victim = leader
    if victim is None or victim.name in stopped_before:
        victim = next(n for n in cluster.nodes if n.name not in stopped_before and n is not leader)
    stop = NodeStop(victim.name, was_leader=victim is leader)
    report.node_stops.append(stop)
    cfg.log(f"chaos: stopping RabbitMQ node {victim.name} (exports leader: {stop.was_leader})")
    began = time.monotonic()
    await asyncio.to_thread(cluster.stop_node, victim)
    deadline = began + 120
    channel: aio_pika.abc.AbstractChannel | None = None
    while time.monotonic() < deadline and math.isnan(stop.consuming_s):
        await asyncio.sleep(0.5)
        if math.isnan(stop.leader_s):
            now = await asyncio.to_thread(cluster.leader, queue)
            if now is not None and now.name != victim.name:
                stop.leader_s = time.monotonic() - began
        try:
            if channel is None or channel.is_closed:
                channel = await connection.channel()
            # The underlay channel: a robust one answers from its cache (see _depths).
            underlay = await channel.get_underlay_channel()
            declared = await underlay.queue_declare(queue, passive=True)
        except Exception:  # the soak's own connection is failing over too: ask again
            channel = None
            continue
        alive = sum(1 for p in workers.procs if p is not None and p.poll() is None)
        consumers = declared.consumer_count or 0
        if not math.isnan(stop.leader_s) and consumers >= alive:
            stop.consuming_s = time.monotonic() - began
    if channel is not None:
        with contextlib.suppress(Exception):
            await channel.close()
    if math.isnan(stop.consuming_s):
        report.problems.append(f"workers not all consuming 120 s after {victim.name} stopped")
    cfg.log(
        f"chaos: node down; new exports leader after {stop.leader_s:.1f} s, every worker "
        f"consuming after {stop.consuming_s:.1f} s"
    )
    await asyncio.sleep(max(0.0, cfg.broker_outage_s - (time.monotonic() - began)))
    started = time.monotonic()
    await asyncio.to_thread(cluster.start_node, victim)
    stop.restart_s = time.monotonic() - started
    cfg.log(f"chaos: node {victim.name} running again after {stop.restart_s:.1f} s")


async def _readiness(port: int) -> dict[str, Any] | None:
    """A worker's ``/readyz`` answer (ready or not), or None when it does not answer."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=8)) as session,
            session.get(f"http://127.0.0.1:{port}/readyz") as resp,
        ):
            body = await resp.json()
            return body if isinstance(body, dict) else None
    except Exception:
        return None


def _logged_during(logs: list[Path], event: str, outage: DbOutage) -> list[dict[str, Any]]:
    """The workers' log records named ``event`` from the outage's start to 2 s after its end."""
    assert outage.began is not None and outage.ended is not None
    out = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
                if outage.began <= at <= outage.ended + timedelta(seconds=2):
                    out.append(record)
    return out


def _laddered(logs: list[Path], outage: DbOutage) -> int:
    """Retries the workers scheduled during the outage because the store refused connections
    (``STORE-UNAVAILABLE``): proof that the outage met events, and that they waited."""
    retries = _logged_during(logs, "consumer.retry_scheduled", outage)
    return sum(1 for r in retries if r.get("code") == "STORE-UNAVAILABLE")


def _unnotifiable(logs: list[Path], outages: list[DbOutage]) -> set[str]:
    """Bad events dead-lettered while the database was down: their dead letter is checked
    like any other, but the record for the digest mail could not be written then (the
    notification recorder writes to the store), so no mail is expected for them."""
    return {
        str(r.get("event_id"))
        for o in outages
        for r in _logged_during(logs, "consumer.dead_lettered", o)
    }


async def _all_ready(workers: Workers, timeout_s: float) -> bool:
    """Until every worker answers ready (False after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all([await _ready(port) for port in workers.ports]):
            return True
        await asyncio.sleep(0.5)
    return False


async def _db_outage(
    cfg: SoakConfig, database: DatabaseControl, workers: Workers, report: SoakReport
) -> None:
    """Stop PostgreSQL for ``db_outage_s`` under load: events wait (the ladder), nothing is
    dead-lettered for it (checked with everything else at the end); every running worker's
    readiness must report the store down meanwhile and come back once it is up again.

    Only once every worker is ready: a worker that starts while the database is down exits
    (its start-up migration fails; it does not wait as it does for the broker), and the
    soak counts a worker that exits by itself as a failure."""
    await _all_ready(workers, 90)
    cfg.log(f"chaos: PostgreSQL stopped for {cfg.db_outage_s:.0f} s")
    await asyncio.to_thread(database.stop)
    began = time.monotonic()
    began_at = datetime.now(UTC)
    saw_down: set[int] = set()
    while time.monotonic() - began < cfg.db_outage_s:
        await asyncio.sleep(1.0)
        for i, port in enumerate(workers.ports):
            body = await _readiness(port)
            store = ((body or {}).get("checks") or {}).get("store") or {}
            if store.get("ok") is False:
                saw_down.add(i)
    await asyncio.to_thread(database.start)
    outage = DbOutage(
        down_s=time.monotonic() - began,
        unready_workers=len(saw_down),
        began=began_at,
        ended=datetime.now(UTC),
    )
    report.db_outages.append(outage)
    back = time.monotonic()
    if await _all_ready(workers, 90):
        outage.ready_after_s = time.monotonic() - back
    alive = sum(1 for p in workers.procs if p is not None and p.poll() is None)
    if len(saw_down) < alive:
        report.problems.append(
            f"readiness reported the store down on {len(saw_down)} of {alive} workers "
            "during the PostgreSQL outage"
        )
    if math.isnan(outage.ready_after_s):
        report.problems.append("workers not ready 90 s after PostgreSQL came back")
    cfg.log(f"chaos: PostgreSQL back; all workers ready after {outage.ready_after_s:.1f} s")


async def _broker_restart(cfg: SoakConfig, report: SoakReport) -> None:
    """``rabbitmqctl stop_app``, a pause, ``start_app``: the workers must reconnect, restore
    their consumers, and lose nothing (queues and messages are durable)."""
    cfg.log("chaos: RabbitMQ stop_app")
    await asyncio.to_thread(_rabbitmqctl, "stop_app")
    await asyncio.sleep(cfg.broker_outage_s)
    await asyncio.to_thread(_rabbitmqctl, "start_app")
    await asyncio.to_thread(_rabbitmqctl, "await_startup")
    report.broker_restarts += 1
    cfg.log("chaos: RabbitMQ start_app done")


def _rabbitmqctl(command: str) -> None:
    subprocess.run(["rabbitmqctl", command], check=True, capture_output=True, timeout=180)


async def _bc_outage(
    cfg: SoakConfig, workers: Workers, control: ControlClient, report: SoakReport
) -> None:
    """Every BC and Entra request answers 503 for ``bc_outage_s``; workers must stay ready."""
    # Workers that were ready when it began must stay ready (one restarted just before, after
    # a SIGKILL, may still be starting: that is not readiness lost to the outage).
    ready = {i for i, port in enumerate(workers.ports) if await _ready(port)}
    rule = await control.add_fault("status", status=503, probability=1.0)
    began = datetime.now(UTC)
    cfg.log(f"chaos: BC answers 503 for {cfg.bc_outage_s:.0f} s")
    deadline = time.monotonic() + cfg.bc_outage_s
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        for i, port in enumerate(workers.ports):
            proc = workers.procs[i]
            alive = proc is not None and proc.poll() is None
            if i in ready and alive and not await _ready(port):
                report.unready_during_outage += 1
    await control.remove_fault(int(rule["id"]))
    report.bc_outage_s += cfg.bc_outage_s
    report.outages.append((began, datetime.now(UTC)))


async def _wait_until_settled(
    cfg: SoakConfig,
    control: ControlClient,
    connection: aio_pika.abc.AbstractConnection,
    topo: Topology,
    orgs: list[Org],
    expected: dict[str, Expected],
    report: SoakReport,
    workers: Workers,
    started: float,
    first: list[asyncio.Task[None]],
) -> bool:
    """Until every good record exists, the bad ones are dead-lettered and the queues are empty."""
    channel = await connection.channel()
    names = [q.name for q in topo.queues]
    want_records = sum(
        len(e.customers) + len(e.projects) + len(e.invoices) for e in expected.values()
    )
    last_log = 0.0
    while time.monotonic() - started < cfg.timeout_s:
        await asyncio.sleep(2.0)
        for i in workers.restart_crashed():
            report.problems.append(
                f"worker {i} exited by itself (see the logs in {workers.log_dir})"
            )
        if not all(t.done() for t in first):
            continue  # every event published and every planned fault done first
        try:
            depths = await _depths(channel, names)
        except Exception as exc:  # the broker is restarting: ask again
            cfg.log(f"chaos: queue depths unavailable ({type(exc).__name__})")
            continue
        busy = sum(v for k, v in depths.items() if k != topo.dead.name)
        dead = depths[topo.dead.name]
        logging = time.monotonic() - last_log > 15
        if busy and not logging:
            continue  # reading every company's state costs the emulator: only when useful
        have = await _count_records(control, orgs, expected)
        if logging:
            last_log = time.monotonic()
            cfg.log(
                f"chaos: {have}/{want_records} records, {busy} queued, {dead} dead, "
                f"{time.monotonic() - started:.0f} s"
            )
        if have >= want_records and busy == 0 and depths[topo.dead.name] >= report.bad:
            await channel.close()
            return True
    await channel.close()
    return False


async def _stop_drained(
    cfg: SoakConfig,
    workers: Workers,
    connection: aio_pika.abc.AbstractConnection,
    topo: Topology,
) -> None:
    """Stop the workers; a duplicate they were still handling goes back to the queue, so run
    them again until a stop leaves nothing behind."""
    channel = await connection.channel()
    names = [q.name for q in topo.queues if q is not topo.dead]
    try:
        for _ in range(5):
            await asyncio.to_thread(workers.stop_all)
            if not sum((await _depths(channel, names)).values()):
                return
            cfg.log("chaos: messages came back at stop; running the workers again")
            workers.start_all()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(2.0)
                if not sum((await _depths(channel, names)).values()):
                    break
    finally:
        await channel.close()


async def _count_records(
    control: ControlClient, orgs: list[Org], expected: dict[str, Expected]
) -> int:
    n = 0
    for org in orgs:
        exp = expected[org.org_id]
        state = await control.company_state(org.ref)
        numbers = {c["number"] for c in state.get("customers", [])}
        n += len(numbers & set(exp.customers))
        n += len(_project_values(state).keys() & set(exp.projects))
        posted = {
            i["externalDocumentNumber"]
            for i in state.get("salesInvoices", [])
            if i.get("status") != "Draft"
        }
        n += len(posted & set(exp.invoices))
    return n


def _project_values(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for dim in state.get("dimensions", []):
        if dim["code"] == "PROJEKT":
            for v in dim["values"]:
                out.setdefault(v["code"], []).append(v)
    return out


async def _verify(
    cfg: SoakConfig,
    control: ControlClient,
    connection: aio_pika.abc.AbstractConnection,
    topo: Topology,
    orgs: list[Org],
    events: list[Planned],
    expected: dict[str, Expected],
    report: SoakReport,
) -> None:
    """The counts of the issue: records once with the right content, bad ones dead-lettered
    with their code, nothing left anywhere."""
    problems = report.problems
    channel = await connection.channel()
    depths = await _depths(channel, [q.name for q in topo.queues])
    report.exports_left = depths[topo.exports.name]
    report.retry_left = sum(
        v for k, v in depths.items() if k not in (topo.exports.name, topo.dead.name)
    )
    dead: dict[str, dict[str, Any]] = {}
    queue = await channel.get_queue(topo.dead.name, ensure=False)
    while (msg := await queue.get(fail=False, no_ack=True)) is not None:
        headers = dict(msg.headers or {})
        dead.setdefault(str(headers.get(H.EVENT_ID) or msg.message_id), headers)
        report.dead_lettered += 1
    await channel.close()
    for e in events:
        got = dead.pop(e.event_id, None)
        if e.bad_code:
            if got is None:
                report.lost += 1
                problems.append(f"bad event {e.event_id} ({e.type}) not dead-lettered")
            elif got.get(H.ERROR_CODE) != e.bad_code:
                report.dead_unexpected += 1
                problems.append(
                    f"bad event {e.event_id}: code {got.get(H.ERROR_CODE)} "
                    f"({str(got.get(H.ERROR_MESSAGE))[:150]}), expected {e.bad_code}"
                )
        elif got is not None:
            report.dead_unexpected += 1
            report.lost += 1  # its record may exist (a duplicate succeeded), the event failed
            problems.append(
                f"good {e.type} {e.event_id} dead-lettered: {got.get(H.ERROR_CODE)} "
                f"{str(got.get(H.ERROR_MESSAGE))[:150]}"
            )
    for event_id, headers in dead.items():
        report.dead_unexpected += 1
        problems.append(f"dead letter of no event: {event_id} {headers.get(H.ERROR_CODE)!s}")

    for org in orgs:
        exp = expected[org.org_id]
        state = await control.company_state(org.ref)
        optional = exp.optional_customers
        by_number: dict[str, list[dict[str, Any]]] = {}
        for c in state.get("customers", []):
            by_number.setdefault(c["number"], []).append(c)
        for number, name in exp.customers.items():
            found = by_number.pop(number, [])
            _count(report, f"customer {number} of {org.org_id}", len(found))
            if found and found[0]["displayName"] != name:
                report.wrong_content += 1
                report.stale += found[0]["displayName"] in exp.older_names
                problems.append(f"customer {number}: name {found[0]['displayName']!r}")
        for number in exp.bad_customers:
            if by_number.pop(number.upper(), None):
                problems.append(f"bad customer {number} exists in BC")
        for number, found in by_number.items():
            if number.startswith(f"C{org.index}X") or number in optional:
                if len(found) > 1:
                    report.duplicated += len(found) - 1
                    problems.append(f"customer {number} {len(found)} times")
                elif number not in optional:
                    problems.append(f"unexpected customer {number}")
        values = _project_values(state)
        for code, name in exp.projects.items():
            found = values.get(code, [])
            _count(report, f"project {code} of {org.org_id}", len(found))
            if found and found[0]["displayName"] != name:
                report.wrong_content += 1
                report.stale += found[0]["displayName"] in exp.older_names
                problems.append(f"project {code}: name {found[0]['displayName']!r}")
        invoices: dict[str, list[dict[str, Any]]] = {}
        for inv in state.get("salesInvoices", []):
            invoices.setdefault(inv.get("externalDocumentNumber", ""), []).append(inv)
        for number, total in exp.invoices.items():
            found = invoices.pop(number, [])
            posted = [i for i in found if i.get("status") != "Draft"]
            _count(report, f"invoice {number} of {org.org_id}", len(found))
            if len(posted) != len(found):
                report.lost += 1 if not posted else 0
                problems.append(f"invoice {number}: {len(found) - len(posted)} left as draft")
            if posted and abs(float(posted[0]["totalAmountExcludingTax"]) - total) > 0.005:
                report.wrong_content += 1
                problems.append(
                    f"invoice {number}: total {posted[0]['totalAmountExcludingTax']} != {total}"
                )
        for number in exp.bad_invoices:
            if invoices.pop(number, None):
                problems.append(f"bad invoice {number} exists in BC")
        for number in invoices:
            if number.startswith((f"I{org.index}X", f"B{org.index}X")):
                problems.append(f"unexpected invoice {number}")
    if report.retry_left or report.exports_left:
        problems.append(f"{report.retry_left} left on the ladder, {report.exports_left} in exports")
    if report.unready_during_outage:
        problems.append(f"workers unready {report.unready_during_outage} times in a BC outage")


async def _notifications(
    db_url: str, key: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every notification item and digest in the store."""
    store = Store.from_url(db_url, secrets=SecretBox([key]))
    try:
        async with store.read() as conn:
            items = (await conn.execute(select(notification_items))).mappings().all()
            digests = (await conn.execute(select(notification_digests))).mappings().all()
    finally:
        await store.close()
    return [dict(i) for i in items], [dict(d) for d in digests]


async def _wait_for_digests(
    cfg: SoakConfig, db_url: str, key: str, events: list[Planned], skip: set[str]
) -> None:
    """Until every bad event is recorded for a person and every record went out in a digest
    (the last window may still be open when the queues are drained)."""
    bad = {e.event_id for e in events if e.bad_code and e.event_id not in skip}
    deadline = time.monotonic() + cfg.digest_first_delay_s + cfg.digest_window_s + 30
    while time.monotonic() < deadline:
        items, digests = await _notifications(db_url, key)
        recorded = {i["event_id"] for i in items}
        pending = sum(1 for i in items if i["digest_id"] is None)
        unsent = sum(1 for d in digests if d["sent_at"] is None)
        if bad <= recorded and not pending and not unsent:
            return
        cfg.log(f"chaos: {pending} notifications pending, {unsent} digests unsent")
        await asyncio.sleep(2.0)


def _windows(failed_at: list[datetime], first_delay_s: float, window_s: float) -> int:
    """How many digests failures at these moments make, one per window (``due_at``)."""
    n = 0
    last: datetime | None = None
    for at in sorted(failed_at):
        if last is not None and at <= last:
            continue  # joins the digest sent at ``last``
        due = at + timedelta(seconds=first_delay_s)
        last = due if last is None else max(due, last + timedelta(seconds=window_s))
        n += 1
    return n


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _verify_mails(
    cfg: SoakConfig,
    outbox: Path,
    db_url: str,
    key: str,
    orgs: list[Org],
    events: list[Planned],
    report: SoakReport,
) -> None:
    """One digest per organization per window, listing its bad events with their codes; no
    mail for an organization without bad events, nor for failures that went away by retrying
    (faults, the BC outage)."""
    problems = report.problems
    items, digests = await _notifications(db_url, key)
    mails: dict[int, EmailMessage] = {}
    for path in sorted(outbox.glob("*.eml")):
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(msg, EmailMessage)
        found = re.search(r"\.digest-(\d+)@", str(msg["Message-ID"]))
        if found is None:
            problems.append(f"mail {path.name} is not a digest")
            continue
        mails[int(found.group(1))] = msg
    report.mails = len(mails)
    good = {e.event_id for e in events if not e.bad_code}
    for org in orgs:
        all_bad = [e for e in events if e.bad_code and e.org is org]
        bad = [e for e in all_bad if e.event_id not in report.unnotified]
        mine = sorted(
            (d for d in digests if d["org_id"] == org.org_id),
            key=lambda d: _aware(d["created_at"]),
        )
        texts: dict[int, str] = {}
        for d in mine:
            mail = mails.pop(int(d["id"]), None)
            if mail is None or d["sent_at"] is None:
                problems.append(f"digest {d['id']} of {org.org_id} not sent ({d['last_error']})")
                continue
            part = mail.get_body(preferencelist=("plain",))
            texts[int(d["id"])] = part.get_content() if isinstance(part, EmailMessage) else ""
        if not all_bad:
            if mine:
                problems.append(f"{org.org_id} had no bad event and got {len(mine)} mail(s)")
            continue
        if not bad:
            continue  # its bad events all failed while the database was down
        report.dirty_orgs += 1
        report.mailed_orgs += 1 if texts else 0
        failures = [i for i in items if i["org_id"] == org.org_id and i["kind"] == "failure"]
        windows = _windows(
            [_aware(i["occurred_at"]) for i in failures],
            cfg.digest_first_delay_s,
            cfg.digest_window_s,
        )
        report.mail_windows += windows
        if not 1 <= len(mine) <= windows:
            problems.append(
                f"{org.org_id}: {len(mine)} digests for failures in {windows} window(s)"
            )
        for a, b in itertools.pairwise(mine):
            gap = (_aware(b["created_at"]) - _aware(a["created_at"])).total_seconds()
            if gap < cfg.digest_window_s - 0.05:
                problems.append(f"{org.org_id}: two digests {gap:.1f} s apart")
        for start, end in report.outages:
            during = [d for d in mine if start <= _aware(d["created_at"]) <= end]
            if len(during) > 1:
                problems.append(f"{org.org_id}: {len(during)} digests during a BC outage")
        for e in bad:
            # Recorded twice when a worker died between its dead letter and the ack: at least
            # once, like the dead letter itself. The person must still read about it once.
            recorded = {i["digest_id"] for i in failures if i["event_id"] == e.event_id}
            number = _number_of(e)
            listing = [
                t
                for d, t in texts.items()
                if d in recorded and f"(error code {e.bad_code})" in t and number in t
            ]
            if len(listing) != 1:
                problems.append(f"bad {e.type} {number} of {org.org_id} in {len(listing)} mails")
        for i in failures:
            if i["event_id"] in good:
                problems.append(f"good event {i['event_id']} notified: {i['code']}")
        codes = set(re.findall(r"\(error code ([A-Z0-9-]+)\)", "".join(texts.values())))
        if extra := codes - {str(e.bad_code) for e in all_bad}:
            problems.append(f"{org.org_id}: mails name codes {sorted(extra)}")
    if mails:
        problems.append(f"mails of digests {sorted(mails)} of no organization")
    if pending := [i for i in items if i["digest_id"] is None]:
        problems.append(f"{len(pending)} notifications never sent")


def _number_of(e: Planned) -> str:
    data = json.loads(e.body)["data"]
    return str((data.get("invoice") or data.get("customer") or data.get("project"))["number"])


def _count(report: SoakReport, what: str, n: int) -> None:
    if n == 0:
        report.lost += 1
        report.problems.append(f"{what} missing in BC")
    elif n > 1:
        report.duplicated += n - 1
        report.problems.append(f"{what} {n} times in BC")


async def _drop(connection: aio_pika.abc.AbstractConnection, topo: Topology) -> None:
    with contextlib.suppress(Exception):
        channel = await connection.channel()
        for spec in topo.queues:
            await channel.queue_delete(spec.name, if_unused=False, if_empty=False)
        await channel.exchange_delete(topo.exchange)
