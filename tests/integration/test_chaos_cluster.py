"""Reduced cluster chaos (issue 22) in CI: three real RabbitMQ nodes clustered on this machine,
two worker processes given all three addresses, and the node leading the exports queue
stopped, then another, each started again, while the events are handled (plus a SIGKILL).
Afterwards nothing is lost or doubled, every bad event is dead-lettered with its code, the
queue got a new leader and the workers consumed again after each stop. Events the broker
drops on the retry ladder meanwhile (RabbitMQ 3.10.8 does, ``python -m tests.chaos.dlx_loss``)
are published again by the retry watch. The full size is ``make chaos-cluster``
(``python -m tests.chaos.cluster``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.ci import CI_TIMING, show_and_scan
from tests.chaos.cluster import running_cluster
from tests.chaos.soak import SoakConfig, run_soak
from tests.emulator.server import EmulatorProcess
from tests.support.rabbitmq_node import rabbitmq_missing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        rabbitmq_missing() is not None,
        reason=f"no RabbitMQ cluster here: {rabbitmq_missing()}",
    ),
]


@pytest.mark.timeout(420)
async def test_cluster_node_stops_lose_nothing(
    bc_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    control = bc_emulator.new_control()
    try:
        await control.reset()
    finally:
        await control.close()
    with running_cluster() as cluster:
        cfg = SoakConfig(
            amqp_url=cluster.amqp_url,
            emulator_url=bc_emulator.url,
            ca_file=bc_emulator.ca_file,
            work_dir=tmp_path,
            events=400,
            orgs=6,
            workers=2,
            kills=1,
            cuts=0,
            broker_outages=0,
            cluster=cluster,
            node_stops=2,
            broker_outage_s=4.0,
            timeout_s=240,
            **CI_TIMING,
        )
        report = await run_soak(cfg)
    show_and_scan(report)

    assert report.problems == []
    assert report.lost == 0 and report.duplicated == 0 and report.dead_unexpected == 0
    assert report.dead_lettered >= report.bad > 0
    assert report.retry_left == 0 and report.exports_left == 0
    assert sum(1 for n in report.leaders.values() if n) >= 2  # leaders spread over the nodes
    assert len(report.node_stops) == 2 and report.node_stops[0].was_leader
    assert report.node_stops[0].node != report.node_stops[1].node
    assert all(s.consuming_s < 120 and s.restart_s < 120 for s in report.node_stops)
