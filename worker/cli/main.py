"""The ``bc-sync`` command line (DESIGN §11)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from worker import tracing
from worker.app import ROLES, build_services, check_roles
from worker.cli.common import ExitCode
from worker.cli.config import register as register_config
from worker.cli.dlq import register as register_dlq
from worker.cli.log import register as register_log
from worker.cli.poll import register as register_poll
from worker.cli.reconcile import register as register_reconcile
from worker.config.crypto import SecretKeyError
from worker.config.settings import Settings, SettingsError, exit_on_bad_settings
from worker.log import configure
from worker.messaging.topology import Topology, apply_topology
from worker.runtime import run_services


def _roles(value: str) -> list[str]:
    roles = [r.strip() for r in value.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise argparse.ArgumentTypeError(
            f"unknown role(s) {', '.join(bad) or '(none)'}; choose from {', '.join(ROLES)}"
        )
    return roles


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    check_roles(settings, args.roles)  # fail before connecting to anything
    try:
        tracing.configure()  # OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, else off
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    try:
        services = await build_services(settings, args.roles)
        await run_services(services)
    finally:
        await asyncio.to_thread(tracing.shutdown)  # flush the last spans (a blocking export)
    return ExitCode.OK


async def cmd_topology_apply(args: argparse.Namespace, settings: Settings) -> int:
    topology = await apply_topology(settings)
    names = [q.name for q in topology.queues]
    if args.json:
        print(json.dumps({"exchange": topology.exchange, "queues": names}))
    else:
        print(f"exchange {topology.exchange} (topic)")
        for name in names:
            print(f"queue    {name}")
    return ExitCode.OK


async def cmd_topology_export(args: argparse.Namespace, settings: Settings) -> int:
    doc = json.dumps(Topology.from_settings(settings).definitions(), indent=2) + "\n"
    if args.output:
        await asyncio.to_thread(Path(args.output).write_text, doc, encoding="utf-8")
    else:
        sys.stdout.write(doc)
    return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bc-sync",
        description="Moment <-> Business Central integration worker. Settings come from "
        "BC_SYNC_* environment variables (or .env).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the worker roles until SIGTERM")
    run.add_argument(
        "--roles",
        type=_roles,
        default=list(ROLES),
        help=f"comma-separated roles to run (default: all of {','.join(ROLES)})",
    )
    run.set_defaults(func=cmd_run)

    topo = sub.add_parser("topology", help="RabbitMQ topology")
    topo_sub = topo.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = topo_sub.add_parser("apply", help="declare exchange and queues (idempotent)")
    apply.add_argument("--json", action="store_true", help="print JSON")
    apply.set_defaults(func=cmd_topology_apply)
    export = topo_sub.add_parser("export", help="print the topology as RabbitMQ definitions")
    export.add_argument("--output", "-o", help="write to this file instead of stdout")
    export.set_defaults(func=cmd_topology_export)

    register_dlq(sub)
    register_config(sub)
    register_poll(sub)
    register_log(sub)
    register_reconcile(sub)

    return parser


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed, else None (asyncio's own loop).

    uvloop's loop, transports and TLS run in C: the worker's hot path (AMQP frames and TLS to
    BC per message) costs less CPU (``make bench`` scenario 1). It is a dependency except on
    platforms it does not support, where the worker runs unchanged on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = exit_on_bad_settings()
    configure(settings.log_format, settings.log_level)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            code = runner.run(args.func(args, settings))
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    except (SettingsError, SecretKeyError) as exc:  # e.g. no BC_SYNC_API_TOKEN / SECRET_KEY
        print(f"bc-sync: invalid setting: {exc}", file=sys.stderr)
        code = ExitCode.USAGE
    sys.exit(code)
