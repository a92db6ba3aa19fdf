"""``python -m worker.ops dlq …``: the dead-letter commands without the rest of the CLI.

The same commands as ``bc-sync dlq …`` once ``worker/cli.py`` registers them; handy where only
the package is importable, and used by the tests that kill a replay mid-way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from worker.config.settings import exit_on_bad_settings
from worker.log import configure
from worker.ops.commands import register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bc-sync", description="bc-sync operations commands")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = exit_on_bad_settings()
    configure(settings.log_format, settings.log_level)
    try:
        code = asyncio.run(args.func(args, settings))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
