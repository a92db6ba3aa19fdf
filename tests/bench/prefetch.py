"""Scenario 9 (issue #22): prefetch and fairness. 50 quiet organizations' latency alone, and
while one organization sends 10,000 events (QUICK: 2,000) as fast as its publisher goes, with
the fair share of the prefetch and with the behaviour before it (``BC_SYNC_FAIR_SHARE=false``).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench.harness import PY, Bench, Org, WorkerProc, customer_event
from tests.bench.scenarios import Sizes, Table, _f, pct, wait_consumers
from worker.config.settings import Settings
from worker.messaging.topology import Topology

# The production ladder: parking waits on its steps (the bench's 1,2,5 s ladder would bring a
# flood back every 5 s). No event fails here, so no retry uses it.
LADDER = "10,60,600,3600,21600"
QUIET_RATE = 25.0  # events/s over the 50 quiet organizations: half an event per second each
FLOOD_ORG = 900  # a bench tenant index no other scenario uses
GOAL_RATIO = 2.0  # quiet p99 with the flood ÷ alone
OLD_WAIT_S = 10.0  # fair share off: the time box after the quiet events' last publish


@dataclass
class Run:
    latencies: list[float]
    by_offset: list[tuple[float, float]]  # (publish time after the run's start, latency)
    quiet: int  # quiet events sent
    flood_exported: int
    flood_publish_s: float
    parked_at_end: int  # messages on the ladder when the run ended
    exports_at_end: int


async def fairness(bench: Bench, sizes: Sizes, orgs: Sequence[Org]) -> Table:
    """9. Quiet organizations' p99 alone, with one organization's flood, fair share on / off."""
    await bench.ctl.set_limits(latency_ms=100)
    (flood,) = await bench.ensure_orgs([FLOOD_ORG])
    flood_n = 2_000 if sizes.quick else 10_000
    seconds = max(8.0, sizes.paced_seconds)
    alone = await _run(bench, sizes, orgs, flood, "s9a", seconds, flood_n=0, fair=True)
    fair = await _run(bench, sizes, orgs, flood, "s9f", seconds, flood_n=flood_n, fair=True)
    # Before the fair share: the quiet events queue behind the whole flood; a short time box.
    old = await _run(
        bench, sizes, orgs, flood, "s9o", seconds, flood_n=flood_n, fair=False, wait_s=OLD_WAIT_S
    )
    base = pct(alone.latencies, 99)
    table = Table(
        f"9. Prefetch and fairness: 50 quiet orgs at {QUIET_RATE:g} events/s, one org sends "
        f"{flood_n:,} events (100 ms per BC request, prefetch {sizes.prefetch})",
        [
            "run",
            "quiet events exported",
            "p50 s",
            "p99 s",
            "p99 ÷ alone",
            "flood exported",
            "flood on the ladder / in the queue at the end",
        ],
    )
    for label, run in (
        ("quiet orgs alone", alone),
        ("with the flood, fair share", fair),
        ("with the flood, fair share off (before)", old),
    ):
        p99 = pct(run.latencies, 99)
        late = len(run.latencies) < run.quiet
        table.rows.append(
            [
                label,
                f"{len(run.latencies):,} of {run.quiet:,}",
                _f(pct(run.latencies, 50), 3) if run.latencies else "-",
                (">" if late else "") + (_f(p99, 3) if run.latencies else "-"),
                (">" if late else "") + (f"{p99 / base:.2f}" if run.latencies and base else "-"),
                f"{run.flood_exported:,}" if run is not alone else "-",
                f"{run.parked_at_end:,} / {run.exports_at_end:,}" if run is not alone else "-",
            ]
        )
    ratio = pct(fair.latencies, 99) / base if base and fair.latencies else float("inf")
    complete = len(fair.latencies) == fair.quiet
    table.goals.append(
        (
            f"quiet p99 with the flood ≤ {GOAL_RATIO:g} x alone",
            complete and ratio <= GOAL_RATIO,
            f"{ratio:.2f} x" + ("" if complete else " (not every quiet event exported)"),
        )
    )
    table.notes.append(
        f"The flood is published with confirms as fast as the bench's publisher goes (took "
        f"{fair.flood_publish_s:.1f} s) while the quiet organizations publish at their pace for "
        f"{seconds:g} s; latency is publish → bc.customer.exported. An organization holding its "
        "share of the prefetch (at least 10, else prefetch ÷ (organizations in flight + 1)) has "
        "its next messages parked on the retry ladder (production ladder "
        f"{LADDER} s, attempts unchanged) instead of holding slots."
    )
    table.notes.append(
        "Fair share off is the behaviour before issue #22: the quiet events wait behind the "
        f"flood in the queue's order; the run stops {seconds + OLD_WAIT_S:g} s after the first "
        "publish, so its figures are a lower bound ('>'). The flood org alone is served at its "
        "own BC limits (5 requests at once, our 6,000 per 5 minutes budget) either way."
    )
    during = [lat for at, lat in fair.by_offset if at <= fair.flood_publish_s]
    after = [lat for at, lat in fair.by_offset if at > fair.flood_publish_s]
    if during and after:
        table.notes.append(
            f"With the fair share, quiet events published while the flood was being published: "
            f"{len(during)}, p99 {pct(during, 99):.3f} s; after: {len(after)}, p99 "
            f"{pct(after, 99):.3f} s (every flood message ahead of a quiet one in the queue is "
            "moved to the ladder first)."
        )
    table.chart = {"quiet p99 ÷ alone (flood, fair share)": ratio}
    return table


def _start(bench: Bench, prefix: str, prefetch: int, fair: bool) -> WorkerProc:
    """``bc-sync run --roles consume`` with the production ladder and the fair share on / off."""
    env = bench.env(prefix, prefetch=prefetch)
    env["BC_SYNC_RETRY_DELAYS"] = LADDER
    env["BC_SYNC_FAIR_SHARE"] = "true" if fair else "false"
    log = (bench.work / f"{prefix}.log").open("wb")
    args = [PY, "-m", "worker.cli", "run", "--roles", "consume"]
    proc = subprocess.Popen(args, env=env, cwd=bench.work, stdout=log, stderr=subprocess.STDOUT)
    return WorkerProc(proc)


async def _topology(bench: Bench, prefix: str) -> tuple[Settings, Topology]:
    assert bench.connection is not None
    settings = bench.settings(prefix).model_copy(
        update={"retry_delays": tuple(float(d) for d in LADDER.split(","))}
    )
    topology = Topology.from_settings(settings)
    channel = await bench.connection.channel()
    await topology.apply(channel)
    await channel.close()
    return settings, topology


async def _drop(bench: Bench, settings: Settings, topology: Topology) -> None:
    """Delete this run's queues (the flood's rest) and exchange."""
    assert bench.connection is not None
    channel = await bench.connection.channel()
    for spec in topology.queues:
        try:
            await channel.queue_delete(spec.name)
        except Exception:
            channel = await bench.connection.channel()
    try:
        await channel.exchange_delete(settings.exchange)
    finally:
        await channel.close()


async def _run(
    bench: Bench,
    sizes: Sizes,
    orgs: Sequence[Org],
    flood: Org,
    name: str,
    seconds: float,
    *,
    flood_n: int,
    fair: bool,
    wait_s: float = 30.0,
) -> Run:
    prefix = f"bench-{bench.run_tag}-{name}"
    settings, topology = await _topology(bench, prefix)
    collector = await bench.collector(settings)
    worker = _start(bench, prefix, sizes.prefetch, fair)
    try:
        await wait_consumers(bench, prefix, 1)
        # Tokens and company facts of every organization first: cold caches are not the point.
        warm = [customer_event(o.org_id, f"{name}W") for o in [*orgs, flood]]
        await bench.publish(settings, warm)
        await collector.wait_for([e.exported_id for e in warm], 60)
        quiet = [
            customer_event(orgs[k % len(orgs)].org_id, f"{name}Q{k}")
            for k in range(int(QUIET_RATE * seconds))
        ]
        flooding = [customer_event(flood.org_id, f"{name}F{k}") for k in range(flood_n)]
        started = time.perf_counter()
        publish_s = 0.0

        async def publish_flood() -> None:
            nonlocal publish_s
            await bench.publish(settings, flooding)
            publish_s = time.perf_counter() - started

        flood_task = asyncio.create_task(publish_flood())
        sent = await bench.publish(settings, quiet, rate=QUIET_RATE)
        await flood_task
        left = started + seconds + wait_s - time.perf_counter()
        await collector.wait_for([e.exported_id for e in quiet], max(1.0, left))
        parked = sum(
            [
                await bench.depth(settings, spec.name[len(prefix) + 1 :])
                for _, spec in topology.retries
            ]
        )
        exports_left = await bench.depth(settings)
    finally:
        await bench.stop_worker(worker)
        await collector.close()
    latencies = [collector.received[i] - sent[i] for i in sent if i in collector.received]
    by_offset = sorted(
        (sent[i] - started, collector.received[i] - sent[i])
        for i in sent
        if i in collector.received
    )
    flood_exported = sum(1 for e in flooding if e.exported_id in collector.received)
    await _drop(bench, settings, topology)
    return Run(latencies, by_offset, len(quiet), flood_exported, publish_s, parked, exports_left)
