"""``make demo`` as a newcomer runs it: it must finish with everything it promises shown."""

from __future__ import annotations

import pytest

from worker import demo


async def test_the_demo_shows_the_product_end_to_end(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BC_SYNC_AMQP_URL", amqp_url)
    assert await demo.main() == 0
    out = capsys.readouterr().out
    for promised in (
        "201 Created",
        "200 Updated",
        "posting groups EXPORT / KUNDER-EXP",  # the abroad customer
        "PROJEKT=4008, AVDELNING=100",  # line dimensions on a posted invoice
        "(Moment 1865) customer 30001",  # the invoice that came before its customer
        "bc.expense.imported (4)",
        "BC-ACCOUNT-MISSING",
        "Subject: Business Central integration: 1 problem needs your attention",
        "bc.integration.failed for Moment user",
    ):
        assert promised in out, promised
