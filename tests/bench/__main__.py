"""``python -m tests.bench [--quick] [--only 1,3] [--profile]``: the scenarios of issue #10.

Needs RabbitMQ (``AMQP_URL`` / ``BC_SYNC_AMQP_URL``, else localhost). Starts the BC emulator and
the worker processes itself. ``QUICK=1`` in the environment is the same as ``--quick``. Prints
every table and writes ``bench-report.md`` in the current directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.bench import many_orgs, prefetch, report, scenarios
from tests.bench.harness import Bench, Org, customer_event
from tests.bench.scenarios import Sizes, Table


async def run(args: argparse.Namespace) -> int:
    sizes = Sizes.for_mode(args.quick)
    if args.memory_events:
        sizes.memory_events = args.memory_events
    amqp = os.environ.get("AMQP_URL") or os.environ.get(
        "BC_SYNC_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
    )
    only = {int(x) for x in args.only.split(",")} if args.only else set(range(1, 10))
    work = Path(tempfile.mkdtemp(prefix="bc-sync-bench-"))
    bench = Bench(amqp, work)
    if args.worker_tree:
        bench.worker_tree = Path(args.worker_tree).resolve()
        if not (bench.worker_tree / "worker" / "__init__.py").is_file():
            print(f"--worker-tree {args.worker_tree}: no worker/ package there")
            return 2
    bench.log_level = args.worker_log_level
    bench.tracing = args.tracing
    tables: list[Table] = []
    started = time.monotonic()
    try:
        await bench.start()
        orgs = await bench.ensure_orgs(range(sizes.orgs))
        if args.profile:
            args.keep = True  # the profile stays in the work directory
            await profile(bench, sizes, orgs, work)
            return 0

        def done(table: Table) -> None:
            tables.append(table)
            print(report.markdown(table), flush=True)
            print(f"[{time.monotonic() - started:.0f} s]", flush=True)

        if 1 in only:
            done(await scenarios.overhead(bench, sizes, orgs))
        if 2 in only:
            (org,) = await bench.ensure_orgs([100])
            done(await scenarios.requests_per_object(bench, org))
        sat = None
        if only & {3, 4, 7}:
            table, sat = await scenarios.realistic(bench, sizes, orgs)
            done(table)
        if 4 in only and sat is not None:
            done(await scenarios.fairness(bench, sizes, orgs, sat))
        if 5 in only:
            (org,) = await bench.ensure_orgs([200])
            done(await scenarios.etiquette(bench, sizes, org))
        if 6 in only:
            done(await scenarios.memory(bench, sizes, orgs))
        if 7 in only and sat is not None:
            done(await scenarios.scale_out(bench, sizes, orgs, sat))
        if 8 in only:
            done(await many_orgs.many_orgs(bench, sizes.quick))
        if 9 in only:
            done(await prefetch.fairness(bench, sizes, orgs))
    finally:
        await bench.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")
    elapsed = time.monotonic() - started
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    header = (
        f"{'QUICK' if sizes.quick else 'Full'} run of `make bench` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {elapsed:.0f} s. The broker, the BC emulator, the worker "
        "process(es) and the bench share these cores. Figures are ratios or counts; absolute "
        "numbers are context for this machine only."
        + (f" Load average at the end: {' / '.join(load)} (1/5/15 min)." if load else "")
        + (
            " Workers traced every event (in-memory exporter behind the batching processor)."
            if args.tracing != "off"
            else ""
        )
    )
    out = Path("bench-report.md")
    png = report.chart(tables, Path("bench-report.png"))
    out.write_text(report.document(tables, header, png), encoding="utf-8")
    print(f"report written to {out.resolve()} ({elapsed:.0f} s)")
    return 0


async def profile(bench: Bench, sizes: Sizes, orgs: list[Org], work: Path) -> None:
    """The worker under cProfile on scenario 1's load; prints the top functions."""
    await bench.ctl.set_limits(latency_ms=0)
    events = [
        customer_event(orgs[k % len(orgs)].org_id, f"PF{k}") for k in range(sizes.overhead_events)
    ]
    out = work / "worker.prof"
    result = await scenarios.run_ours(bench, "prof", events, prefetch=sizes.prefetch, profile=out)
    print(
        f"profiled {result.exported} customers, {result.rate:.1f}/s, {result.bc_rate:.1f} BC req/s"
    )
    for _ in range(50):
        if out.exists():
            break
        await asyncio.sleep(0.1)
    stats = pstats.Stats(str(out))
    print("CPU time (time.process_time) of the worker process")
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(80)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1")
    parser.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--profile", action="store_true", help="profile the worker instead")
    parser.add_argument(
        "--worker-tree",
        help="run the workers from this directory's worker/ package (measure a proposed diff)",
    )
    parser.add_argument("--worker-log-level", default="INFO", help="BC_SYNC_LOG_LEVEL of workers")
    parser.add_argument(
        "--memory-events", type=int, help="events of scenario 6 (default 60,000; QUICK 2,000)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--tracing",
        choices=["off", "memory"],
        default="off",
        help="workers trace every event into an in-memory exporter (the cost of tracing)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
