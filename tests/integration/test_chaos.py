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

from tests.chaos.postgres import own_postgres, postgres_missing
from tests.chaos.soak import SoakConfig, run_soak
from tests.conftest import SECRET_SCAN
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
        # Time compressed further than the full size: chaos every 1-2.5 s, a 0.2 s Retry-After
        # on the injected 429s, hanging requests given up after 2 s, a killed worker's invoice
        # claims free after 8 s, a shorter ladder (still longer than the BC outage).
        chaos_every_s=(1.0, 2.5),
        retry_after_s=0.2,
        bc_timeout_s=2.0,
        claim_ttl_s=8.0,
        retry_delays="0.25,0.5,1,2,3,3,3,3,3,3,3,3",
        digest_window_s=10.0,
    )
    report = await run_soak(cfg)
    print("\n" + report.figures())
    for problem in report.problems[:40]:
        print(f"PROBLEM: {problem}")
    # The workers' own logs join the suite-wide secret scan, with the organizations' secrets.
    SECRET_SCAN.add(*report.secrets)
    for log in report.log_files:  # the worker logs and the digest mails
        SECRET_SCAN.check(f"chaos output {log.name}", log.read_bytes())

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
            chaos_every_s=(1.0, 2.0),
            retry_after_s=0.2,
            bc_timeout_s=2.0,
            claim_ttl_s=8.0,
            # Longer in all than the outage: what it holds up must still be waiting when it ends.
            retry_delays="0.25,0.5,1,2,3,3,3,3,3,3,3,3",
            digest_window_s=10.0,
        )
        report = await run_soak(cfg)
    print("\n" + report.figures())
    for problem in report.problems[:40]:
        print(f"PROBLEM: {problem}")
    SECRET_SCAN.add(*report.secrets)
    for log in report.log_files:
        SECRET_SCAN.check(f"chaos output {log.name}", log.read_bytes())

    assert report.problems == []
    assert len(report.db_outages) == 1 and report.db_outages[0].down_s >= 6.0
    assert report.db_outages[0].unready_workers == 2  # readiness said so, on each worker
    assert report.db_outages[0].ready_after_s < 90
    assert report.lost == 0 and report.duplicated == 0 and report.dead_unexpected == 0
    assert report.retry_left == 0 and report.exports_left == 0
