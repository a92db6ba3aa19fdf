"""``python -m tests.bench.worker_entry --profile FILE -- run --roles consume``

The worker's own CLI (``worker.cli.main``) under cProfile with a **CPU-time** clock: the worker
shares 2 cores with the broker and the emulator, so a wall-clock profile mostly shows waiting.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.worker_entry")
    parser.add_argument("--profile", required=True, help="write CPU-time cProfile stats here")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = [a for a in args.rest if a != "--"]
    from worker.cli import main as cli_main

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        cli_main(argv)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
