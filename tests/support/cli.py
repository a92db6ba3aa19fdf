"""The ``bc-sync`` command line as an operator runs it: its environment, a run in its own
process, and the JSON it printed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.db import KEY
from worker.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def cli_env(settings: Settings, *, store_and_bc: bool = False) -> dict[str, str]:
    """This process's environment with the ``BC_SYNC_*`` variables of ``settings``: the broker
    names, and with ``store_and_bc`` also the database, the key and the BC endpoints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BC_SYNC_")}
    env.update(
        BC_SYNC_AMQP_URL=settings.amqp_url.get_secret_value(),
        BC_SYNC_QUEUE_PREFIX=settings.queue_prefix,
        BC_SYNC_EXCHANGE=settings.exchange,
        BC_SYNC_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    if store_and_bc:
        env.update(
            BC_SYNC_DATABASE_URL=settings.database_url.get_secret_value(),
            BC_SYNC_SECRET_KEY=KEY,
            BC_SYNC_BC_API_URL=settings.bc_api_url,
            BC_SYNC_AUTHORITY_URL=settings.authority_url,
            BC_SYNC_CA_FILE=str(settings.ca_file),
            BC_SYNC_CLIENT_ID=settings.client_id or "",
        )
    return env


async def run_cli(
    env: dict[str, str], cwd: Path, *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m worker.cli ARGV`` in its own process, no terminal to ask on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        *argv,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except TimeoutError:
        # Not left running to hold the test's broker, store or emulator after it failed.
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())


def printed_json(out: str) -> Any:
    """The JSON document a command printed in its own process (JSON log lines go to stdout
    too: the document is the one that starts on a line of its own)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def json_out(text: str) -> Any:
    """The JSON a command printed in this process (unconfigured structlog may print lines
    before it, never JSON ones)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line[:1] in "{[")
    return json.loads("\n".join(lines[start:]))
