"""``python -m tests.bench.worker_entry [--profile FILE] [--tracing memory] -- run --roles consume``

The worker's own CLI (``worker.cli.main``), optionally under cProfile with a **CPU-time** clock
(the worker shares 2 cores with the broker and the emulator, so a wall-clock profile mostly
shows waiting), and optionally with tracing on and an in-memory exporter behind the batching
processor ``bc-sync run`` uses for OTLP (what tracing costs the worker, without a collector).
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.worker_entry")
    parser.add_argument("--profile", help="write CPU-time cProfile stats here")
    parser.add_argument("--tracing", choices=["off", "memory"], default="off")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = [a for a in args.rest if a != "--"]
    from worker.cli import main as cli_main

    exporter = None
    if args.tracing == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from worker import tracing

        exporter = InMemorySpanExporter()
        tracing.use(exporter, batch=True)
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        cli_main(argv)
    except SystemExit:
        pass
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        if exporter is not None:
            print(f"bench: {len(exporter.get_finished_spans())} spans exported", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
