"""The ``bc-sync`` command line (DESIGN §11)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from worker.config.commands import register as register_config
from worker.config.crypto import SecretKeyError
from worker.config.settings import Settings, SettingsError, exit_on_bad_settings
from worker.log import configure
from worker.ops.commands import register as register_dlq
from worker.ops.log_commands import register as register_log
from worker.sync.poll_commands import register as register_poll

ROLES = ("consume", "poll", "api", "notify")

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _roles(value: str) -> list[str]:
    roles = [r.strip() for r in value.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise argparse.ArgumentTypeError(
            f"unknown role(s) {', '.join(bad) or '(none)'}; choose from {', '.join(ROLES)}"
        )
    return roles


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from worker.api.app import api_tokens
    from worker.app import build_services
    from worker.runtime import run_services

    if "api" in args.roles:
        api_tokens(settings)  # fail before connecting to anything
    services = await build_services(settings, args.roles)
    await run_services(services)
    return 0


async def cmd_topology_apply(args: argparse.Namespace, settings: Settings) -> int:
    from worker.messaging.topology import apply_topology

    topology = await apply_topology(settings)
    names = [q.name for q in topology.queues]
    if args.json:
        print(json.dumps({"exchange": topology.exchange, "queues": names}))
    else:
        print(f"exchange {topology.exchange} (topic)")
        for name in names:
            print(f"queue    {name}")
    return 0


async def cmd_topology_export(args: argparse.Namespace, settings: Settings) -> int:
    from worker.messaging.topology import Topology

    doc = json.dumps(Topology.from_settings(settings).definitions(), indent=2) + "\n"
    if args.output:
        await asyncio.to_thread(Path(args.output).write_text, doc, encoding="utf-8")
    else:
        sys.stdout.write(doc)
    return 0


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

    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = exit_on_bad_settings()
    configure(settings.log_format, settings.log_level)
    try:
        code = asyncio.run(args.func(args, settings))
    except KeyboardInterrupt:
        code = 130
    except (SettingsError, SecretKeyError) as exc:  # e.g. no BC_SYNC_API_TOKEN / SECRET_KEY
        print(f"bc-sync: invalid setting: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
