"""The scenarios of issue #10. Each returns a :class:`Table` (rows of figures plus goal checks)."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika

from tests.bench.harness import (
    PY,
    Bench,
    Event,
    Org,
    WorkerProc,
    customer_event,
    invoice_event,
    mixed_events,
    project_event,
)
from tests.emulator.seed import DEMO
from tests.emulator.server import REPO_ROOT


@dataclass
class Sizes:
    """Event counts and durations; ``quick`` keeps the whole run near 2 minutes."""

    quick: bool
    orgs: int = 50
    overhead_events: int = 6000
    raw_events: int = 20000
    mixed_events: int = 5000
    paced_seconds: float = 20.0
    naive_seconds: float = 15.0
    etiquette_events: int = 5000
    etiquette_seconds: float = 40.0
    memory_events: int = 60_000  # RSS settles after ~50 s (about 20,000 events) here
    prefetch: int = 256

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            overhead_events=1200,
            raw_events=5000,
            mixed_events=600,
            paced_seconds=5.0,
            naive_seconds=3.0,
            etiquette_events=1500,
            etiquette_seconds=10.0,
            memory_events=2_000,
        )


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    goals: list[tuple[str, bool | None, str]] = field(default_factory=list)  # goal, met, figure
    notes: list[str] = field(default_factory=list)
    chart: dict[str, float] = field(default_factory=dict)  # series name -> value


@dataclass
class RunResult:
    events: int
    exported: int
    seconds: float  # first to last exported event
    rate: float  # exported events / s
    bc_requests: int
    bc_rate: float
    worker_cpu_s: float
    emulator_cpu_s: float
    latencies: dict[str, float] = field(default_factory=dict)  # exported id -> seconds
    rss_kib: list[tuple[float, int]] = field(default_factory=list)


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[idx]


async def bc_total(bench: Bench) -> int:
    return sum(int(s["total_requests"]) for s in await bench.ctl.stats())


async def wait_consumers(bench: Bench, prefix: str, count: int, timeout: float = 60.0) -> None:
    assert bench.connection is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        channel = await bench.connection.channel()
        try:
            queue = await channel.declare_queue(f"{prefix}.exports", passive=True)
            if (queue.declaration_result.consumer_count or 0) >= count:
                return
        finally:
            await channel.close()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} worker(s) did not start consuming within {timeout:g} s")


async def run_ours(
    bench: Bench,
    name: str,
    events: Sequence[Event],
    *,
    workers: int = 1,
    prefetch: int = 256,
    rate: float | None = None,
    warmup: Sequence[Event] = (),
    sample_rss: bool = False,
    timeout: float = 300.0,
    profile: Path | None = None,
    skip_org: str | None = None,
) -> RunResult:
    """Run ``events`` through ``workers`` worker processes.

    Without ``rate`` the queue is filled first, then the workers start: throughput at
    saturation. With ``rate`` the workers run (warmed up with ``warmup``) and events are
    published at that pace: end-to-end latency from publish to the ``bc.*.exported`` event,
    which the worker emits after BC committed the object. Events of ``skip_org`` are sent
    but neither awaited nor counted.
    """
    prefix = f"bench-{bench.run_tag}-{name}"
    settings = await bench.topology(prefix)
    collector = await bench.collector(settings)
    procs: list[WorkerProc] = []
    try:
        if rate is None:
            await bench.publish(settings, events)
        procs = [
            bench.start_worker(prefix, prefetch=prefetch, profile=profile) for _ in range(workers)
        ]
        await wait_consumers(bench, prefix, workers)
        consuming = time.perf_counter()
        if warmup:
            await bench.publish(settings, warmup)
            await collector.wait_for([e.exported_id for e in warmup], 60)
        cpu0 = sum(p.cpu_s() for p in procs)
        emu0 = bench.emulator_cpu_s()
        bc0 = await bc_total(bench)
        ids = [e.exported_id for e in events if e.org != skip_org]
        rss: list[tuple[float, int]] = []
        sent: dict[str, float] = {}
        started = time.perf_counter()

        async def sampler() -> None:
            while True:
                rss.append((time.perf_counter() - started, sum(p.rss_kib() for p in procs)))
                await asyncio.sleep(0.5)

        sampling = asyncio.create_task(sampler()) if sample_rss else None
        if rate is not None:
            sent = await bench.publish(settings, events, rate=rate)
        await collector.wait_for(ids, timeout)
        if sampling is not None:
            sampling.cancel()
        bc1 = await bc_total(bench)
        cpu1 = sum(p.cpu_s() for p in procs)
        emu1 = bench.emulator_cpu_s()
    finally:
        for p in procs:
            await bench.stop_worker(p)
        await collector.close()
    got = [collector.received[i] for i in ids if i in collector.received]
    # Saturated: from the moment the workers consume (ramp-up with 50 orgs' tokens and company
    # facts included); paced: from the first publish.
    start = min(sent.values()) if sent else consuming
    seconds = (max(got) - start) if got else 0.0
    latencies = {
        i: collector.received[i] - sent[i] for i in ids if i in sent and i in collector.received
    }
    return RunResult(
        events=len(ids),
        exported=len(got),
        seconds=seconds,
        rate=len(got) / seconds if seconds > 0 else 0.0,
        bc_requests=bc1 - bc0,
        bc_rate=(bc1 - bc0) / seconds if seconds > 0 else 0.0,
        worker_cpu_s=cpu1 - cpu0,
        emulator_cpu_s=emu1 - emu0,
        latencies=latencies,
        rss_kib=rss,
    )


# --- baselines ----------------------------------------------------------------------------


async def _program(module: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run a baseline program (``python -m module args``): its last stdout line, as JSON."""
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", module, *args, stdout=subprocess.PIPE, cwd=REPO_ROOT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def _fill_queue(channel: Any, queue_name: str, bodies: Sequence[bytes]) -> None:
    """Persistent messages into a queue (default exchange), 100 confirms in flight."""
    window = asyncio.Semaphore(100)

    async def one(body: bytes) -> None:
        try:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue_name,
            )
        finally:
            window.release()

    tasks = []
    for body in bodies:
        await window.acquire()
        tasks.append(asyncio.create_task(one(body)))
    await asyncio.gather(*tasks)


async def run_raw(bench: Bench, count: int) -> dict[str, Any]:
    """Baseline (a): bare aio-pika + aiohttp POST to a zero-latency server, both subprocesses."""
    assert bench.connection is not None
    queue_name = f"bench-{bench.run_tag}-raw"
    channel = await bench.connection.channel(publisher_confirms=True)
    await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
    body = customer_event("raw", "10001").body
    await _fill_queue(channel, queue_name, [body] * count)
    server = subprocess.Popen(
        [PY, "-m", "tests.bench.raw", "server"], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    try:
        assert server.stdout is not None
        port = int((await asyncio.to_thread(server.stdout.readline)).split()[1])
        result = await _program(
            "tests.bench.raw",
            "consume",
            "--amqp",
            bench.amqp_url,
            "--queue",
            queue_name,
            "--url",
            f"http://127.0.0.1:{port}/customers",
            "--count",
            str(count),
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(10)
        await channel.queue_delete(queue_name)
        await channel.close()
    return result


def _credentials_file(bench: Bench, orgs: Sequence[Org], name: str) -> Path:
    """The organizations' BC credentials for a baseline program, as ``{org id: {...}}``."""
    creds = {
        o.org_id: {
            "tenant_id": o.tenant_id,
            "client_id": DEMO.client_id,
            "client_secret": DEMO.client_secret,
            "environment": DEMO.environment,
            "company_name": DEMO.company_name,
        }
        for o in orgs
    }
    path = bench.work / f"{name}-orgs.json"
    path.write_text(json.dumps(creds))
    return path


async def run_fair(bench: Bench, orgs: Sequence[Org], count: int, prefetch: int) -> dict[str, Any]:
    """Baseline (c): the smallest correct aio-pika + aiohttp program doing our 3 BC calls per
    customer over TLS to the same emulator, confirmed result, ack after (tests/bench/fair.py)."""
    assert bench.connection is not None
    queue_name = f"bench-{bench.run_tag}-fair"
    results_name = f"{queue_name}.results"
    channel = await bench.connection.channel(publisher_confirms=True)
    await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
    await channel.declare_queue(results_name, durable=True)
    events = [customer_event(orgs[k % len(orgs)].org_id, f"F{k}") for k in range(count)]
    await _fill_queue(channel, queue_name, [e.body for e in events])
    orgs_file = _credentials_file(bench, orgs, "fair")
    try:
        result = await _program(
            "tests.bench.fair",
            "--amqp",
            bench.amqp_url,
            "--queue",
            queue_name,
            "--results",
            results_name,
            "--orgs",
            str(orgs_file),
            "--url",
            bench.url,
            "--ca-file",
            str(bench.ca_file),
            "--count",
            str(count),
            "--prefetch",
            str(prefetch),
            timeout=300,
        )
    finally:
        await channel.queue_delete(queue_name)
        await channel.queue_delete(results_name)
        await channel.close()
    return result


async def run_naive(bench: Bench, orgs: Sequence[Org], seconds: float) -> dict[str, Any]:
    """Baseline (b): the synchronous pika + requests peer on customer events, for ``seconds``."""
    assert bench.connection is not None
    queue_name = f"bench-{bench.run_tag}-naive"
    channel = await bench.connection.channel(publisher_confirms=True)
    await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
    # More than it can do in the time given: it never runs dry.
    events = [customer_event(o.org_id, f"N{k}") for k in range(40) for o in orgs]
    for e in events:
        await channel.default_exchange.publish(
            aio_pika.Message(e.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue_name,
        )
    orgs_file = _credentials_file(bench, orgs, "naive")
    try:
        result = await _program(
            "tests.bench.naive",
            "--amqp",
            bench.amqp_url,
            "--queue",
            queue_name,
            "--orgs",
            str(orgs_file),
            "--url",
            bench.url,
            "--ca-file",
            str(bench.ca_file),
            "--duration",
            str(seconds),
            timeout=seconds + 120,
        )
    finally:
        await channel.queue_delete(queue_name)
        await channel.close()
    return result


# --- scenarios ----------------------------------------------------------------------------


def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _load_row(
    name: str, messages: int, request_rate: float, rate: float, cpu_s: float, requests: int
) -> list[Any]:
    """A row of scenario 1: rates, the program's CPU seconds and its CPU µs per request."""
    per_request = cpu_s / max(1, requests) * 1e6
    return [name, messages, _f(request_rate), _f(rate), _f(cpu_s), _f(per_request, 0)]


async def overhead(bench: Bench, sizes: Sizes, orgs: Sequence[Org]) -> Table:
    """1. Our BC requests/s ÷ the raw loop's requests/s, and ÷ the fair program's, at zero BC
    latency."""
    await bench.ctl.set_limits(latency_ms=0)
    raw = await run_raw(bench, sizes.raw_events)
    fair = await run_fair(bench, orgs, sizes.overhead_events, sizes.prefetch)
    events = [
        customer_event(orgs[k % len(orgs)].org_id, f"O{k}") for k in range(sizes.overhead_events)
    ]
    ours = await run_ours(bench, "s1", events, prefetch=sizes.prefetch)
    ratio = ours.bc_rate / raw["rate"] if raw["rate"] else 0.0
    fair_ratio = ours.bc_rate / fair["request_rate"] if fair["request_rate"] else 0.0
    table = Table(
        "1. Overhead at zero BC latency (customers, 50 orgs)",
        ["loop", "messages", "HTTP requests/s", "messages/s", "CPU s", "CPU µs per request"],
    )
    table.rows += [
        _load_row(
            "raw: aio-pika + 1 aiohttp POST",
            raw["count"],
            raw["rate"],
            raw["rate"],
            raw["cpu_s"],
            raw["count"],
        ),
        _load_row(
            "fair: aio-pika + aiohttp, the same 3 BC calls over TLS, confirmed result",
            fair["count"],
            fair["request_rate"],
            fair["rate"],
            fair["cpu_s"],
            fair["requests"],
        ),
        _load_row(
            "bc-sync (3 BC calls per customer, emulator over TLS)",
            ours.exported,
            ours.bc_rate,
            ours.rate,
            ours.worker_cpu_s,
            ours.bc_requests,
        ),
    ]
    table.goals.append(("our BC requests/s ÷ raw requests/s ≥ 0.6", ratio >= 0.6, f"{ratio:.2f}"))
    table.goals.append(
        ("our BC requests/s ÷ fair requests/s ≥ 0.8", fair_ratio >= 0.8, f"{fair_ratio:.2f}")
    )
    if ours.seconds:
        table.notes.append(
            f"worker CPU {ours.worker_cpu_s / ours.seconds * 100:.0f} % of one core over "
            f"{ours.seconds:.1f} s; {ours.worker_cpu_s / max(1, ours.bc_requests) * 1e6:.0f} µs "
            "worker CPU per BC request; the emulator used "
            f"{ours.emulator_cpu_s / ours.seconds * 100:.0f} % of one core. CPU per request is "
            "each program's own CPU time (the rates depend on the share of the 2 cores each "
            "gets while other processes run)"
        )
    table.chart = {
        "raw msg/s": raw["rate"],
        "fair BC req/s": fair["request_rate"],
        "ours BC req/s": ours.bc_rate,
    }
    return table


async def requests_per_object(bench: Bench, org: Org) -> Table:
    """2. BC requests per object, from the emulator's request log."""
    await bench.ctl.set_limits(latency_ms=0)
    prefix = f"bench-{bench.run_tag}-s2"
    settings = await bench.topology(prefix)
    collector = await bench.collector(settings)
    worker = bench.start_worker(prefix)
    table = Table(
        "2. BC requests per object (emulator request log)", ["object", "requests", "goal"]
    )
    try:
        await wait_consumers(bench, prefix, 1)
        warm = customer_event(org.org_id, "R0")
        await bench.publish(settings, [warm])
        await collector.wait_for([warm.exported_id], 60)
        cases: list[tuple[str, Event, int]] = [
            ("customer (new)", customer_event(org.org_id, "R1"), 3),
            ("customer (existing, updated)", customer_event(org.org_id, "R1"), 3),
            ("project (new)", project_event(org.org_id, "PR1"), 2),
            ("invoice, 1 line", invoice_event(org.org_id, "R1", 1), 5),
            ("invoice, 10 lines", invoice_event(org.org_id, "R10", 10), 5),
            ("invoice, 50 lines", invoice_event(org.org_id, "R50", 50), 5),
        ]
        for label, event, goal in cases:
            last = await bench.ctl.requests(limit=1)
            since = int(last[-1]["seq"]) if last else 0
            await bench.publish(settings, [event])
            ok = await collector.wait_for([event.exported_id], 60)
            log = await bench.ctl.requests(tenant=org.tenant_id, since=since)
            calls = [
                r for r in log if r["path"].startswith("/v2.0/") and r.get("batch_parent") is None
            ]
            n = len(calls)
            table.rows.append([label, n if ok else f"{n} (not exported!)", f"≤ {goal}"])
            table.goals.append((f"{label} ≤ {goal}", ok and n <= goal, str(n)))
            if ok and n > goal:
                table.notes.append(
                    f"{label}: "
                    + ", ".join(f"{r['method']} {r['path'].split('/')[-1]}" for r in calls)
                )
    finally:
        await bench.stop_worker(worker)
        await collector.close()
    return table


@dataclass
class Saturation:
    ours: RunResult
    naive: dict[str, Any]
    paced: RunResult
    rate: float


async def realistic(bench: Bench, sizes: Sizes, orgs: Sequence[Org]) -> tuple[Table, Saturation]:
    """3. 100 ms per BC request, 50 orgs, mixed events: vs naive, and latency at half load."""
    await bench.ctl.set_limits(latency_ms=100)
    events = mixed_events(orgs, sizes.mixed_events, "S3")
    ours = await run_ours(bench, "s3", events, prefetch=sizes.prefetch)
    # Sequential anyway: 10 orgs are enough, and its warm-up (token + company per org) is short.
    naive = await run_naive(bench, orgs[:10], sizes.naive_seconds)
    rate = ours.rate / 2
    paced_events = mixed_events(orgs, max(200, int(rate * sizes.paced_seconds)), "S3P")
    warm = [customer_event(o.org_id, "S3W") for o in orgs]
    paced = await run_ours(
        bench, "s3p", paced_events, prefetch=sizes.prefetch, rate=rate, warmup=warm
    )
    lat = list(paced.latencies.values())
    table = Table(
        "3. Realistic latency: 100 ms per BC request, 50 orgs, mixed events",
        ["run", "events", "events/s", "BC requests/s", "p50 s", "p99 s"],
    )
    naive_rate = float(naive.get("rate", 0.0))
    table.rows.append(
        [
            "bc-sync, saturated (queue pre-filled)",
            ours.exported,
            _f(ours.rate),
            _f(ours.bc_rate),
            "-",
            "-",
        ]
    )
    if "skipped" in naive:
        table.rows.append(["naive pika + requests", "-", "-", "-", "-", "-"])
        table.notes.append(str(naive["skipped"]))
    else:
        table.rows.append(
            [
                "naive pika + requests (customers only)",
                naive["count"],
                _f(naive_rate, 2),
                _f(naive["requests"] / naive["seconds"] if naive["seconds"] else 0.0),
                "-",
                "-",
            ]
        )
    table.rows.append(
        [
            f"bc-sync at half saturation ({rate:.0f} events/s)",
            paced.exported,
            _f(paced.rate),
            _f(paced.bc_rate),
            _f(pct(lat, 50), 3),
            _f(pct(lat, 99), 3),
        ]
    )
    by_type: dict[str, list[float]] = {}
    for e in paced_events:
        if e.exported_id in paced.latencies:
            by_type.setdefault(e.type.split(".")[1], []).append(paced.latencies[e.exported_id])
    table.notes.append(
        "half saturation, p50 / p99 by object: "
        + ", ".join(
            f"{kind} {pct(v, 50):.3f} / {pct(v, 99):.3f} s" for kind, v in sorted(by_type.items())
        )
        + f"; {paced.exported} of {paced.events} exported, offered {rate:.0f}/s, "
        f"done {paced.rate:.1f}/s"
    )
    ratio = ours.rate / naive_rate if naive_rate else 0.0
    table.goals.append(
        ("throughput ≥ 20 x naive peer", ratio >= 20 if naive_rate else None, f"{ratio:.1f} x")
    )
    table.goals.append(
        ("p99 < 1 s at half saturation", pct(lat, 99) < 1.0, f"{pct(lat, 99):.3f} s")
    )
    table.notes.append(
        f"BC's limit is 5 requests in flight per tenant: at 100 ms that is ≤ 50 requests/s per "
        f"org, ≤ {50 * len(orgs):,} requests/s for {len(orgs)} orgs; prefetch {sizes.prefetch}."
    )
    table.chart = {"ours events/s (100 ms)": ours.rate, "naive events/s": naive_rate}
    return table, Saturation(ours, naive, paced, rate)


async def fairness(bench: Bench, sizes: Sizes, orgs: Sequence[Org], sat: Saturation) -> Table:
    """4. One org's BC answers 503 (then 429) throughout; the others' p99 vs scenario 3."""
    await bench.ctl.set_limits(latency_ms=100)
    base_p99 = pct(list(sat.paced.latencies.values()), 99)
    bad = orgs[0]
    table = Table(
        "4. Fairness: one org's BC failing throughout, the others at scenario 3's pace",
        ["failing org answers", "other orgs' events", "p50 s", "p99 s", "p99 ÷ scenario 3"],
    )
    for status, retry_after in ((503, None), (429, 1.0)):
        fault = await bench.ctl.add_fault(
            "status", tenant=bad.tenant_id, path="^/v2\\.0/", status=status, retry_after=retry_after
        )
        events = mixed_events(orgs, max(200, int(sat.rate * sizes.paced_seconds)), f"S4{status}")
        warm = [customer_event(o.org_id, f"S4W{status}") for o in orgs[1:]]
        run = await run_ours(
            bench,
            f"s4-{status}",
            events,
            prefetch=sizes.prefetch,
            rate=sat.rate,
            warmup=warm,
            timeout=60,
            skip_org=bad.org_id,
        )
        await bench.ctl.remove_fault(int(fault["id"]))
        lat = list(run.latencies.values())
        p99 = pct(lat, 99)
        ratio = p99 / base_p99 if base_p99 else float("nan")
        label = f"{status}" + (f" (Retry-After {retry_after:g} s)" if retry_after else "")
        table.rows.append([label, len(lat), _f(pct(lat, 50), 3), _f(p99, 3), f"{ratio:.2f}"])
        table.goals.append(
            (f"others' p99 ≤ 1.5 x scenario 3 ({label})", ratio <= 1.5, f"{ratio:.2f} x")
        )
    return table


async def etiquette(bench: Bench, sizes: Sizes, org: Org) -> Table:
    """5. One org, many events at once: in flight at the emulator, and 429s after adapting."""
    # BC's real limits for this subject (fresh tenant), and a little latency so 5 slots matter.
    await bench.ctl.set_limits(latency_ms=20, rate_limit=6000, rate_window_s=300)
    # BC calls only (not Entra: msal keeps a throttled answer for a while by itself).
    fault = await bench.ctl.add_fault(
        "status", tenant=org.tenant_id, path="^/v2\\.0/", status=429, retry_after=1, count=3
    )
    events = [customer_event(org.org_id, f"E{k}") for k in range(sizes.etiquette_events)]
    prefix = f"bench-{bench.run_tag}-s5"
    settings = await bench.topology(prefix)
    collector = await bench.collector(settings)
    await bench.publish(settings, events)
    worker = bench.start_worker(prefix, prefetch=sizes.prefetch)
    cpu = 0.0
    try:
        await wait_consumers(bench, prefix, 1)
        cpu0 = worker.cpu_s()
        await collector.wait_for([e.exported_id for e in events], sizes.etiquette_seconds)
        cpu = worker.cpu_s() - cpu0
    finally:
        await bench.stop_worker(worker)
        await collector.close()
        await bench.ctl.remove_fault(int(fault["id"]))
        await bench.ctl.set_limits(latency_ms=0, rate_limit=10**9)
    stats = next((s for s in await bench.ctl.stats() if s["tenant"] == org.tenant_id.lower()), {})
    log = [
        r
        for r in await bench.ctl.requests(tenant=org.tenant_id)
        if r["path"].startswith("/v2.0/") and r.get("batch_parent") is None
    ]
    injected = [r for r in log if r.get("fault") == "status"]
    last_injected = max((int(r["seq"]) for r in injected), default=0)
    after = [
        r
        for r in log
        if r["status"] == 429 and r.get("fault") is None and int(r["seq"]) > last_injected
    ]
    done = sum(1 for e in events if e.exported_id in collector.received)
    table = Table(
        f"5. BC etiquette: one org, {len(events):,} customer events at once (20 ms per request)",
        ["figure", "value"],
    )
    table.rows += [
        [
            "events exported in the time box",
            f"{done:,} of {len(events):,} ({sizes.etiquette_seconds:g} s)",
        ],
        ["BC requests seen by the emulator", f"{len(log):,}"],
        ["worker CPU per BC request", f"{cpu / max(1, len(log)) * 1e6:.0f} µs"],
        ["max in flight at the emulator", stats.get("max_in_flight", "?")],
        ["max queued at the emulator", stats.get("max_queued", "?")],
        ["429 injected at the start (limiter adapts)", len(injected)],
        ["429 from BC's own limits after that", len(after)],
        ["429 from BC's own limits in total", stats.get("throttled_429", "?")],
    ]
    table.goals.append(
        (
            "emulator max in flight ≤ 5",
            int(stats.get("max_in_flight", 99)) <= 5,
            str(stats.get("max_in_flight")),
        )
    )
    table.goals.append(("0 x 429 once the limiter adapted", len(after) == 0, str(len(after))))
    table.notes.append(
        f"The time box ends the run, not the events: {len(log):,} requests used "
        f"{cpu:.1f} s of worker CPU in {sizes.etiquette_seconds:g} s, with one organization's "
        f"{sizes.prefetch} prefetched messages waiting on its 5 slots. BC's budget is 6,000 "
        "requests per 5 minutes per tenant (3 per customer); past it our limiter parks events on "
        "the retry ladder instead of sending."
    )
    return table


async def memory(bench: Bench, sizes: Sizes, orgs: Sequence[Org]) -> Table:
    """6. Worker RSS over many events (zero latency, new projects: 2 BC calls each)."""
    await bench.ctl.set_limits(latency_ms=0)
    # The emulator keeps its log; a small one keeps its memory (not ours) out of the way.
    await bench.ctl.set_limits(request_log_size=1000)
    events = [
        project_event(orgs[k % len(orgs)].org_id, f"M{k}") for k in range(sizes.memory_events)
    ]
    run = await run_ours(bench, "s6", events, prefetch=sizes.prefetch, sample_rss=True, timeout=600)
    await bench.ctl.set_limits(request_log_size=200_000)
    samples = run.rss_kib
    (bench.work / "rss.csv").write_text(
        "seconds,rss_kib\n" + "".join(f"{t:.1f},{v}\n" for t, v in samples), encoding="utf-8"
    )
    warm = samples[len(samples) // 5 :] if len(samples) >= 5 else samples
    values = [v for _, v in warm if v]
    lo, hi = (min(values), max(values)) if values else (0, 0)
    mid = statistics.median(values) if values else 0
    spread = max(abs(hi - mid), abs(mid - lo)) / mid * 100 if mid else float("nan")
    table = Table(
        f"6. Memory: worker RSS over {run.exported:,} events",
        ["figure", "value"],
    )
    first = samples[0][1] if samples else 0
    table.rows += [
        ["events exported", f"{run.exported:,} of {run.events:,} in {run.seconds:.1f} s"],
        ["RSS at start", f"{first / 1024:.1f} MiB"],
        [
            "RSS after warm-up (first 20 % of samples dropped): min / median / max",
            f"{lo / 1024:.1f} / {mid / 1024:.1f} / {hi / 1024:.1f} MiB",
        ],
        ["largest deviation from the median after warm-up", f"{spread:.1f} %"],
        ["last sample", f"{(samples[-1][1] if samples else 0) / 1024:.1f} MiB"],
    ]
    table.goals.append(("RSS flat within ±10 % after warm-up", spread <= 10.0, f"±{spread:.1f} %"))
    return table


async def scale_out(bench: Bench, sizes: Sizes, orgs: Sequence[Org], sat: Saturation) -> Table:
    """7. 1 vs 2 worker processes on scenario 3 (saturated)."""
    await bench.ctl.set_limits(latency_ms=100)
    events = mixed_events(orgs, sizes.mixed_events, "S7")
    two = await run_ours(bench, "s7", events, workers=2, prefetch=sizes.prefetch)
    one = sat.ours
    ratio = two.rate / one.rate if one.rate else 0.0
    table = Table(
        "7. Scale-out on scenario 3: 1 vs 2 worker processes",
        ["workers", "events/s", "BC requests/s", "worker CPU s (all)", "CPU per event ms"],
    )
    for n, run in ((1, one), (2, two)):
        table.rows.append(
            [
                n,
                _f(run.rate),
                _f(run.bc_rate),
                _f(run.worker_cpu_s),
                _f(run.worker_cpu_s / max(1, run.exported) * 1000, 2),
            ]
        )
    table.goals.append(("2 workers ÷ 1 worker (reported, no goal)", None, f"{ratio:.2f} x"))
    return table
