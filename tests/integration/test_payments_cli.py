"""``bc-sync poll --once --payments [--org ID] [--json]`` as an operator runs it: the real
``bc-sync`` entry point in its own process, on the store and broker the worker uses, against
the BC emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import factories as f
from tests.support.amqp import bound_queue, drain
from tests.support.cli import printed_json
from tests.support.exports import ORG, Exports, bc_sync
from worker.sync.payments import PAID_EVENT, UPDATED_EVENT


def table(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ORG "))
    return [line.split() for line in lines[start:]]


@pytest.fixture
async def moment_queue(exports: Exports) -> AsyncIterator[str]:
    """A queue bound to the payment events, as Moment would have."""
    async with bound_queue(
        exports.settings, "moment-payments-cli", [PAID_EVENT, UPDATED_EVENT]
    ) as name:
        yield name


async def test_poll_once_payments_as_an_operator_runs_it(
    exports: Exports, moment_queue: str, tmp_path: Path
) -> None:
    emulator = exports.emulator
    await exports.save_config(import_payments=True, payments_from_date="2026-01-01")
    cust = f.customer("10000")
    invoice = f.invoice("9201", cust=cust, lines=[_line(cust)])
    event = await exports.send("moment.invoice.created", {"invoice": invoice})
    assert await exports.done(event) == ["succeeded"]
    bc = await exports.posted("9201")

    first = await bc_sync(exports, tmp_path, "poll", "--once", "--payments", "--json")
    assert first.returncode == 0, first.stderr
    [org] = printed_json(first.stdout)["organizations"]
    assert (org["org"], org["status"], org["checked"], org["published"]) == (ORG, "ok", 1, 0)

    await emulator.control.pay_invoice(bc["id"], 1000, at=emulator.company_ref)
    second = await bc_sync(exports, tmp_path, "poll", "--once", "--payments", "--org", ORG)
    assert second.returncode == 0, second.stderr
    header, row = table(second.stdout)[:2]
    assert header[:5] == ["ORG", "STATUS", "PAID", "UPDATED", "CHECKED"]
    assert row[:5] == [ORG, "ok", "0", "1", "1"]

    await emulator.control.pay_invoice(bc["id"], 2750, at=emulator.company_ref)
    third = await bc_sync(exports, tmp_path, "poll", "--once", "--payments", "--json")
    [org] = printed_json(third.stdout)["organizations"]
    assert (org["paid"], org["payment_updated"]) == (1, 0)
    got = [g.json for g in await drain(exports.settings, moment_queue)]
    assert [e["type"] for e in got] == [UPDATED_EVENT, PAID_EVENT]
    assert {e["data"]["moment_number"] for e in got} == {"9201"}

    unknown = await bc_sync(
        exports, tmp_path, "poll", "--once", "--payments", "--org", "org-nobody", "--json"
    )
    [org] = printed_json(unknown.stdout)["organizations"]
    assert (unknown.returncode, org["status"], org["reason"]) == (0, "skipped", "not_configured")


async def test_poll_once_payments_fails_when_bc_rejects_the_credentials(
    exports: Exports, tmp_path: Path
) -> None:
    emulator = exports.emulator
    await exports.save_config(import_payments=True, payments_from_date="2026-01-01")
    await emulator.control.set_app(emulator.tenant_id, emulator.client_id, enabled_in_bc=False)
    done = await bc_sync(exports, tmp_path, "poll", "--once", "--payments")
    assert done.returncode == 1
    assert "paused" in done.stdout and "BC-CREDENTIALS-REJECTED" in done.stdout
    assert emulator.client_secret not in done.stdout + done.stderr

    # Only expenses without --payments: this organization has no expense import.
    expenses = await bc_sync(exports, tmp_path, "poll", "--once")
    assert expenses.returncode == 0
    assert "No organization has expense import switched on." in expenses.stdout


def _line(cust: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": "Consulting",
        "quantity": 3,
        "unit_price": 1000.0,
        "account_number": "3010",
        "vat_code": "25",
        "project": f.project("4005", department="100", cust=cust),
    }
