"""``make demo`` as a newcomer runs it (a separate process, as ``make demo`` starts it): it must
finish with everything it promises shown."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_the_demo_shows_the_product_end_to_end(amqp_url: str) -> None:
    env = {**os.environ, "BC_SYNC_AMQP_URL": amqp_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.demo",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 120)
    out = output.decode()
    assert proc.returncode == 0, out
    for promised in (
        "201 Created",
        "200 Updated",
        "posting groups EXPORT / KUNDER-EXP",  # the abroad customer
        "PROJEKT=4008, AVDELNING=100",  # line dimensions on a posted invoice
        "(Moment 1865) customer 30001",  # the invoice that came before its customer
        "(Moment 1867) customer 10001 Nordisk Design AB: Paid",  # the credit note, applied
        ", credited 1 500.00",  # on invoice 1864
        "bc.expense.imported (4)",
        "BC-ACCOUNT-MISSING",
        "Subject: Business Central integration: 1 problem needs your attention",
        "bc.integration.failed for Moment user",
    ):
        assert promised in out, promised
