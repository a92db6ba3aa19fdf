"""Reduced chaos soak (issue 9) in CI: 1,000 events over 5 organizations through 2 worker
processes under SIGKILL, broker cuts, a broker outage, BC faults (5xx, 429, hanging requests)
and a BC outage; afterwards nothing is lost, doubled, or left on the ladder, and the workers
stayed ready through the BC outage. The full size is ``make chaos`` (``python -m tests.chaos``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
        orgs=5,
        workers=2,
        kills=5,
        cuts=3,
        broker_outages=1,
        broker_outage_s=4.0,
        bc_outage_s=8.0,
        timeout_s=240,
    )
    report = await run_soak(cfg)
    print("\n" + report.figures())
    for problem in report.problems[:40]:
        print(f"PROBLEM: {problem}")
    # The workers' own logs join the suite-wide secret scan, with the organizations' secrets.
    SECRET_SCAN.add(*report.secrets)
    for log in report.log_files:
        SECRET_SCAN.check(f"chaos worker log {log.name}", log.read_bytes())

    assert report.problems == []
    assert report.kills >= 5 and report.cuts >= 3 and report.broker_outages >= 1
    assert sum(report.faults.values()) > 0 and report.bc_outage_s > 0
    assert report.unready_during_outage == 0
    assert report.lost == 0 and report.duplicated == 0
    assert report.retry_left == 0 and report.exports_left == 0
