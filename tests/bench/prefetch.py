"""Scenario 9 (issue #22): prefetch and fairness. 50 quiet organizations' latency alone, and
while one organization sends 10,000 events (QUICK: 1,000) at once, with
the fair share of the prefetch and with the behaviour before it (``BC_SYNC_FAIR_SHARE=false``).
"""

from __future__ import annotations

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


@dataclass
class Run:
    burst_wait: list[float]  # latency of one event per quiet org published right after the flood
    latencies: list[float]  # quiet events paced after that
    quiet: int  # paced quiet events sent
    flood_exported: int
    flood_publish_s: float
    parked_at_end: int  # messages on the ladder when the run ended
    exports_at_end: int
    burst_box: float  # how long the run waited for those (s)
    box: float  # and for the paced ones, from their first publish


def _fig(values: list[float], q: float, sent: int, box: float) -> str:
    """A percentile, marked as a lower bound when some events never arrived in the run."""
    if not values:
        return f"> {box:g}"
    return (">" if len(values) < sent else "") + _f(pct(values, q), 3)


async def fairness(bench: Bench, sizes: Sizes, orgs: Sequence[Org]) -> Table:
    """9. Quiet organizations' p99 alone, with one organization's flood, fair share on / off."""
    await bench.ctl.set_limits(latency_ms=100)
    (flood,) = await bench.ensure_orgs([FLOOD_ORG])
    flood_n = 1_000 if sizes.quick else 10_000
    seconds = sizes.paced_seconds
    # Before the fair share the quiet events queue behind the whole flood: short time boxes.
    old_box = 3.0 if sizes.quick else 10.0
    alone = await _run(bench, sizes, orgs, flood, "s9a", seconds, flood_n=0, fair=True)
    fair = await _run(bench, sizes, orgs, flood, "s9f", seconds, flood_n=flood_n, fair=True)
    old = await _run(
        bench,
        sizes,
        orgs,
        flood,
        "s9o",
        seconds,
        flood_n=flood_n,
        fair=False,
        burst_s=old_box,
        wait_s=old_box,
    )
    base = pct(alone.latencies, 99)
    table = Table(
        f"9. Prefetch and fairness: 50 quiet orgs, one org sends {flood_n:,} events at once "
        f"(100 ms per BC request, prefetch {sizes.prefetch})",
        [
            "run",
            "1 event per quiet org right after the flood: max s",
            f"then {QUIET_RATE:g} quiet events/s: exported",
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
        late = len(run.latencies) < run.quiet
        p99 = pct(run.latencies, 99)
        table.rows.append(
            [
                label,
                _fig(run.burst_wait, 100, len(orgs), run.burst_box),
                f"{len(run.latencies):,} of {run.quiet:,}",
                _fig(run.latencies, 50, run.quiet, run.box),
                _fig(run.latencies, 99, run.quiet, run.box),
                (">" if late else "") + (f"{p99 / base:.2f}" if run.latencies and base else "?"),
                f"{run.flood_exported:,}" if run is not alone else "-",
                f"{run.parked_at_end:,} / {run.exports_at_end:,}" if run is not alone else "-",
            ]
        )
    complete = len(fair.latencies) == fair.quiet
    ratio = pct(fair.latencies, 99) / base if base and fair.latencies else float("inf")
    table.goals.append(
        (
            f"quiet p99 while the flood is served ≤ {GOAL_RATIO:g} x alone",
            complete and ratio <= GOAL_RATIO,
            f"{ratio:.2f} x" + ("" if complete else " (not every quiet event exported)"),
        )
    )
    reached = len(fair.burst_wait) == len(orgs)
    table.goals.append(
        (
            "every quiet org's event behind the flood exported (fair share)",
            reached,
            f"{len(fair.burst_wait)} of {len(orgs)}",
        )
    )
    if fair.burst_wait:
        moved = flood_n / (fair.flood_publish_s + max(fair.burst_wait))
        table.notes.append(
            f"The flood is published with confirms as fast as the bench's publisher goes "
            f"({fair.flood_publish_s:.1f} s here); then one event of each quiet org, then the "
            f"quiet orgs at {QUIET_RATE:g} events/s for {seconds:g} s. In a single FIFO queue an "
            "event behind the flood is reached only once every flood message ahead of it was "
            f"taken: parked at about {moved:,.0f} messages/s in this run (a confirmed publish "
            "and an ack each, on the cores the publisher, the broker and the emulator share), "
            "which the first column shows. After that the flood waits on the ladder and comes "
            "back at its own pace, and the quiet organizations' p99 is the goal's figure."
        )
    table.notes.append(
        "An organization holding its share of the prefetch (at least 10, else prefetch ÷ "
        "(organizations in flight + 1)) has its next messages parked on the retry ladder "
        f"(here the production ladder {LADDER} s; the wait is the message's own TTL, attempts "
        "unchanged) instead of holding slots. Fair share off is the behaviour before issue #22: "
        "the quiet events wait behind the whole flood, served at its BC limits (5 requests at "
        "once, 3 per customer: about 16 customers/s at 100 ms); "
        f"its time boxes are {old_box:g} s, so its figures are lower bounds ('>')."
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
    burst_s: float = 120.0,
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
        flooding = [customer_event(flood.org_id, f"{name}F{k}") for k in range(flood_n)]
        started = time.perf_counter()
        await bench.publish(settings, flooding)
        publish_s = time.perf_counter() - started
        behind = [customer_event(o.org_id, f"{name}B") for o in orgs]
        burst_sent = await bench.publish(settings, behind)
        await collector.wait_for(burst_sent, burst_s)
        quiet = [
            customer_event(orgs[k % len(orgs)].org_id, f"{name}Q{k}")
            for k in range(int(QUIET_RATE * seconds))
        ]
        paced = time.perf_counter()
        sent = await bench.publish(settings, quiet, rate=QUIET_RATE)
        await collector.wait_for(sent, max(1.0, paced + seconds + wait_s - time.perf_counter()))
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
    await _drop(bench, settings, topology)

    def waited(sent: dict[str, float]) -> list[float]:
        return [collector.received[i] - sent[i] for i in sent if i in collector.received]

    flood_exported = sum(1 for e in flooding if e.exported_id in collector.received)
    return Run(
        waited(burst_sent),
        waited(sent),
        len(quiet),
        flood_exported,
        publish_s,
        parked,
        exports_left,
        burst_s,
        seconds + wait_s,
    )
