"""``python -m tests.chaos``: the full-size soak (``make chaos``), against a BC emulator of its own.

Defaults: 10,000 events over 20 organizations, 2 worker processes, 8 kills, 4 broker cuts, one
broker outage, one BC outage and, when the broker is local and ``rabbitmqctl`` reaches it, one
restart of RabbitMQ itself (``--no-broker-restart`` to leave it running). Needs RabbitMQ at
``AMQP_URL`` (default localhost:5672); ``--database-url`` for PostgreSQL instead of SQLite, or
``--postgres`` for a PostgreSQL server of the soak's own (tests/chaos/postgres.py), which is
also stopped and started under load (``--db-outages``, default 1).
Exit status 0 when every check passed; the figures are printed either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests.chaos.postgres import OwnPostgres, own_postgres, postgres_missing
from tests.chaos.soak import SoakConfig, SoakReport, run_soak
from tests.emulator.server import start_subprocess


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--cuts", type=int, default=4)
    parser.add_argument("--broker-outages", type=int, default=1)
    parser.add_argument(
        "--broker-restart",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also stop and start RabbitMQ itself (rabbitmqctl stop_app / start_app) under load; "
        "default: when the broker is local and rabbitmqctl reaches it",
    )
    parser.add_argument("--bc-outage-s", type=float, default=15.0)
    parser.add_argument("--digest-window-s", type=float, default=60.0)
    parser.add_argument("--timeout-s", type=float, default=840.0)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--database-url", default=os.environ.get("CHAOS_DATABASE_URL"))
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="start a PostgreSQL server of the soak's own and stop it under load",
    )
    parser.add_argument("--db-outages", type=int, default=1)
    parser.add_argument("--db-outage-s", type=float, default=10.0)
    parser.add_argument("--work-dir", type=Path, default=None, help="logs and SQLite file here")
    args = parser.parse_args()
    amqp = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    restart = _broker_is_ours(amqp) if args.broker_restart is None else args.broker_restart
    with contextlib.ExitStack() as stack:
        database = None
        if args.postgres:
            if (reason := postgres_missing()) is not None:
                print(f"chaos: --postgres: {reason}", file=sys.stderr)
                return 2
            database = stack.enter_context(own_postgres())
            args.database_url = database.url
        report = _run(args, amqp, restart, database)
    return report.verdict("chaos soak")


def _run(
    args: argparse.Namespace, amqp: str, restart: bool, database: OwnPostgres | None
) -> SoakReport:
    emulator = start_subprocess()
    try:
        cfg = SoakConfig(
            amqp_url=amqp,
            emulator_url=emulator.url,
            ca_file=emulator.ca_file,
            events=args.events,
            orgs=args.orgs,
            workers=args.workers,
            kills=args.kills,
            cuts=args.cuts,
            broker_outages=args.broker_outages,
            broker_restarts=1 if restart else 0,
            digest_window_s=args.digest_window_s,
            bc_outage_s=args.bc_outage_s,
            timeout_s=args.timeout_s,
            seed=args.seed,
            database_url=args.database_url,
            work_dir=args.work_dir,
            chaos_every_s=(5.0, 20.0),
            prefetch=32,
            database=database,
            db_outages=args.db_outages if database is not None else 0,
            db_outage_s=args.db_outage_s,
            log=functools.partial(print, flush=True),
        )
        return asyncio.run(run_soak(cfg))
    finally:
        emulator.stop()


def _broker_is_ours(amqp_url: str) -> bool:
    """A local broker that ``rabbitmqctl`` can stop and start."""
    if urlsplit(amqp_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return False
    try:
        done = subprocess.run(["rabbitmqctl", "status"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
