"""Reduced chaos soak (issue 9) in CI: 1,000 events over 8 organizations through 2 worker
processes under SIGKILL, broker cuts, a broker outage, BC faults (5xx, 429, hanging requests)
and a BC outage, with updates of the same customers and projects published in a shuffled
order; afterwards nothing is lost, doubled, stale or left on the ladder, the workers
stayed ready through the BC outage, and each organization with bad events got one digest per
window naming them (the others, and the failures that went away by retrying, no mail).
The full size is ``make chaos`` (``python -m tests.chaos``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.ci import CI_TIMING, show_and_scan
from tests.chaos.postgres import own_postgres, postgres_missing
from tests.chaos.soak import SoakConfig, run_soak
from tests.emulator.server import EmulatorProcess

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
async def test_soak_under_kills_cuts_outages_and_bc_faults(
    amqp_url: str, bc_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    control = bc_emulator.new_control()
    try:
        await control.reset()  # faults, limits and data of earlier tests gone
    finally:
        await control.close()
    cfg = SoakConfig(
        amqp_url=amqp_url,
        emulator_url=bc_emulator.url,
        ca_file=bc_emulator.ca_file,
        work_dir=tmp_path,
        events=1000,
        # More organizations than the minimum (5): each one's BC limits (5 requests at once,
        # halved on every 429) then hold back less of the run.
        orgs=8,
        workers=2,
        kills=5,
        cuts=3,
        broker_outages=1,
        broker_outage_s=3.0,
        bc_outage_s=6.0,
        timeout_s=240,
        **CI_TIMING,
    )
    report = await run_soak(cfg)
    show_and_scan(report)

    assert report.problems == []
    assert report.kills >= 5 and report.cuts >= 3 and report.broker_outages >= 1
    assert sum(report.faults.values()) > 0 and report.bc_outage_s > 0
    assert report.unready_during_outage == 0
    assert report.lost == 0 and report.duplicated == 0
    assert report.updates >= 80 and report.stale == 0  # BC holds the newest version of each
    assert report.retry_left == 0 and report.exports_left == 0
    # One digest per organization per window, to the organizations with bad events only.
    assert report.dirty_orgs == 7 and report.mailed_orgs == 7
    assert report.mails <= report.mail_windows


@pytest.mark.timeout(300)
@pytest.mark.skipif(postgres_missing() is not None, reason=f"{postgres_missing()}")
async def test_soak_with_postgresql_stopped_under_load(
    amqp_url: str, bc_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """The soak's PostgreSQL mode with the database stopped for a while under load (a server
    of the soak's own, never the shared one): the events it held up wait on the ladder and
    then succeed (none dead-lettered for it, none lost or doubled), and every worker's
    readiness reported the store down during the outage and was back after it."""
    control = bc_emulator.new_control()
    try:
        await control.reset()
    finally:
        await control.close()
    with own_postgres() as database:
        cfg = SoakConfig(
            amqp_url=amqp_url,
            emulator_url=bc_emulator.url,
            ca_file=bc_emulator.ca_file,
            work_dir=tmp_path,
            events=500,
            orgs=6,
            workers=2,
            kills=1,
            cuts=1,
            database_url=database.url,
            database=database,
            db_outages=1,
            db_outage_s=6.0,
            timeout_s=240,
            **CI_TIMING,
        )
        report = await run_soak(cfg)
    show_and_scan(report)

    assert report.problems == []
    assert len(report.db_outages) == 1 and report.db_outages[0].down_s >= 6.0
    assert report.db_outages[0].unready_workers == 2  # readiness said so, on each worker
    assert report.db_outages[0].ready_after_s < 90
    assert report.db_outages[0].laddered > 0  # it met events under load, and they waited
    assert report.lost == 0 and report.duplicated == 0 and report.dead_unexpected == 0
    assert report.retry_left == 0 and report.exports_left == 0
