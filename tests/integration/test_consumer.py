"""The consumer against a real broker: every outcome class ends where DESIGN §5 says."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support import factories as f
from tests.support.amqp import depth, drain, publish, wait_depth
from tests.support.settings import make_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_for
from worker.config.settings import Settings
from worker.errors import Permanent, Transient
from worker.events.envelope import Event
from worker.events.handlers import FailureReport, Observer, Outcome, Registry
from worker.messaging import headers as H
from worker.messaging.consumer import Consumer
from worker.messaging.topology import Topology

CREATED = "moment.customer.created"


class Recorder(Observer):
    def __init__(self) -> None:
        self.failures: list[FailureReport] = []
        self.successes: list[str] = []

    async def on_success(self, event: Event[Any], outcome: Outcome) -> None:
        self.successes.append(event.id)

    async def on_failure(self, report: FailureReport) -> None:
        self.failures.append(report)


class Script:
    """A handler that plays a script per customer number: raise or succeed, in order."""

    def __init__(self, plans: dict[str, list[Any]] | None = None) -> None:
        self.plans = plans or {}
        self.calls: Counter[str] = Counter()
        self.done: list[str] = []

    async def __call__(self, event: Event[Any]) -> Outcome:
        number = event.data.customer.number
        self.calls[number] += 1
        plan = self.plans.get(number, [])
        step = plan.pop(0) if plan else None
        if isinstance(step, BaseException):
            raise step
        self.done.append(number)
        return Outcome.ok()


async def started(settings: Settings, registry: Registry, **kw: Any) -> Consumer:
    consumer = Consumer(settings, registry, **kw)
    await consumer.start()
    return consumer


async def test_success_path_acks_and_leaves_queues_empty(settings: Settings) -> None:
    script = Script()
    recorder = Recorder()
    consumer = await started(settings, {CREATED: script}, observers=[recorder])
    try:
        for n in ("1", "2", "3"):
            await publish(settings, f.customer_event(n), CREATED)
        await wait_for(lambda: len(script.done) == 3)
        topo = Topology.from_settings(settings)
        await wait_for(lambda: _empty(settings, topo))
        assert sorted(script.done) == ["1", "2", "3"]
        assert len(recorder.successes) == 3
        assert recorder.failures == []
    finally:
        await consumer.stop()


async def _empty(settings: Settings, topo: Topology) -> bool:
    return all([await depth(settings, q.name) == 0 for q in topo.queues])


async def test_invalid_json_is_dead_lettered_at_once(settings: Settings) -> None:
    consumer = await started(settings, {CREATED: Script()})
    try:
        await publish(settings, b"{not json", CREATED)
        topo = Topology.from_settings(settings)
        await wait_depth(settings, topo.dead.name, 1)
        [dead] = await drain(settings, topo.dead.name)
        assert dead.body == b"{not json"
        assert dead.headers[H.ERROR_CODE] == "EVENT-INVALID"
        assert dead.headers[H.ERROR_CLASS] == "invalid"
        assert "not JSON" in dead.headers[H.ERROR_MESSAGE]
        assert dead.headers[H.ATTEMPTS] == 1
        assert dead.headers[H.ROUTING_KEY] == CREATED
    finally:
        await consumer.stop()


async def test_schema_invalid_event_names_the_field(settings: Settings) -> None:
    script = Script()
    consumer = await started(settings, {CREATED: script})
    try:
        cust = f.customer("77")
        del cust["invoice_address"]
        cust["payment_terms_days"] = "thirty"
        await publish(settings, f.body(CREATED, {"customer": cust}, id_="ev-77"), CREATED)
        topo = Topology.from_settings(settings)
        await wait_depth(settings, topo.dead.name, 1)
        [dead] = await drain(settings, topo.dead.name)
        msg = dead.headers[H.ERROR_MESSAGE]
        assert "data.customer.invoice_address" in msg
        assert "data.customer.payment_terms_days" in msg
        assert dead.headers[H.EVENT_ID] == "ev-77"
        assert dead.headers[H.ORG] == f.ORG
        assert script.calls["77"] == 0
    finally:
        await consumer.stop()


async def test_unknown_type_is_dead_lettered(settings: Settings) -> None:
    consumer = await started(settings, {CREATED: Script()})
    try:
        topo = Topology.from_settings(settings)
        # Bound types only reach us; a wrong type inside a bound routing key is still caught.
        await publish(
            settings, f.body("moment.customer.deleted", {"customer": f.customer()}), CREATED
        )
        await wait_depth(settings, topo.dead.name, 1)
        [dead] = await drain(settings, topo.dead.name)
        assert dead.headers[H.ERROR_CODE] == "EVENT-UNKNOWN-TYPE"
    finally:
        await consumer.stop()


async def test_transient_failure_goes_round_the_ladder_then_succeeds(settings: Settings) -> None:
    script = Script({"5": [Transient("BC-UNAVAILABLE", "503 from BC"), None]})
    recorder = Recorder()
    consumer = await started(settings, {CREATED: script}, observers=[recorder])
    try:
        await publish(settings, f.customer_event("5"), CREATED)
        await wait_for(lambda: script.done == ["5"])
        assert script.calls["5"] == 2
        assert [r.final for r in recorder.failures] == [False]
        assert recorder.failures[0].code == "BC-UNAVAILABLE"
        topo = Topology.from_settings(settings)
        await wait_for(lambda: _empty(settings, topo))
    finally:
        await consumer.stop()


async def test_attempts_used_up_dead_letters_with_history(settings: Settings) -> None:
    always = [Transient("BC-THROTTLED", "429") for _ in range(10)]
    script = Script({"9": always})
    recorder = Recorder()
    consumer = await started(settings, {CREATED: script}, observers=[recorder])
    try:
        await publish(settings, f.customer_event("9"), CREATED)
        topo = Topology.from_settings(settings)
        await wait_depth(settings, topo.dead.name, 1)
        [dead] = await drain(settings, topo.dead.name)
        assert script.calls["9"] == settings.attempts == 3
        assert dead.headers[H.ERROR_CLASS] == "attempts_exhausted"
        assert dead.headers[H.ERROR_CODE] == "BC-THROTTLED"
        assert dead.headers[H.ATTEMPTS] == 3
        assert dead.headers[H.FIRST_FAILURE] <= dead.headers[H.LAST_FAILURE]
        assert dead.headers[H.SUBJECT] == "customer 9"
        assert [r.final for r in recorder.failures] == [False, False, True]
        history = dead.headers[H.HISTORY]
        assert [h["attempt"] for h in history] == [1, 2, 3]
        assert [h["class"] for h in history] == ["transient", "transient", "attempts_exhausted"]
        assert all([await depth(settings, spec.name) == 0 for _, spec in topo.retries])
    finally:
        await consumer.stop()


async def test_permanent_failure_dead_letters_at_once(settings: Settings) -> None:
    err = Permanent(
        "BC-POSTING-GROUP-MISSING",
        "Customer posting group 'KUNDER-EXP' does not exist",
        bc_status=400,
        bc_code="Application_DialogException",
    )
    script = Script({"3": [err]})
    consumer = await started(settings, {CREATED: script})
    try:
        await publish(settings, f.customer_event("3"), CREATED)
        topo = Topology.from_settings(settings)
        await wait_depth(settings, topo.dead.name, 1)
        [dead] = await drain(settings, topo.dead.name)
        assert script.calls["3"] == 1
        assert dead.headers[H.ERROR_CLASS] == "permanent"
        assert dead.headers[H.ERROR_CODE] == "BC-POSTING-GROUP-MISSING"
        assert dead.headers[H.BC_STATUS] == 400
        assert dead.headers[H.BC_CODE] == "Application_DialogException"
        assert dead.json["data"]["customer"]["number"] == "3"
    finally:
        await consumer.stop()


async def test_handler_crash_is_retried_not_lost(settings: Settings) -> None:
    script = Script({"4": [RuntimeError("boom"), None]})
    consumer = await started(settings, {CREATED: script})
    try:
        await publish(settings, f.customer_event("4"), CREATED)
        await wait_for(lambda: script.done == ["4"])
        assert script.calls["4"] == 2
    finally:
        await consumer.stop()


async def test_consumer_reconnects_after_connection_cut(amqp_url: str, tmp_path: Path) -> None:
    parts = urlsplit(amqp_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    proxied = amqp_url.replace(f"{parts.hostname}:{parts.port or 5672}", f"127.0.0.1:{proxy.port}")
    if proxied == amqp_url:  # URL without an explicit port
        proxied = amqp_url.replace(f"@{parts.hostname}/", f"@127.0.0.1:{proxy.port}/")
    settings = make_settings(tmp_path, amqp_url=proxied)
    direct = make_settings(
        tmp_path, amqp_url=amqp_url, queue_prefix=settings.queue_prefix, exchange=settings.exchange
    )
    script = Script()
    consumer = await started(settings, {CREATED: script})
    try:
        await publish(direct, f.customer_event("1"), CREATED)
        await wait_for(lambda: script.done == ["1"])
        proxy.cut()
        await wait_for(lambda: not consumer.consuming or True)
        # Published while the consumer is (re)connecting: it must still arrive.
        await publish(direct, f.customer_event("2"), CREATED)
        await wait_for(lambda: "2" in script.done, timeout=30)
        await wait_for(consumer.broker_consumer_count, timeout=30)
        proxy.cut()
        await publish(direct, f.customer_event("3"), CREATED)
        await wait_for(lambda: "3" in script.done, timeout=30)
        assert sorted(set(script.done)) == ["1", "2", "3"]
        assert proxy.cuts == 2
    finally:
        await consumer.stop()
        await proxy.stop()
        from tests.support.amqp import drop_topology

        await drop_topology(direct)


def _worker_env(settings: Settings, tmp_path: Path, slow: float, grace: float) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BC_SYNC_AMQP_URL=settings.amqp_url.get_secret_value(),
        BC_SYNC_QUEUE_PREFIX=settings.queue_prefix,
        BC_SYNC_EXCHANGE=settings.exchange,
        BC_SYNC_RETRY_DELAYS="0.2,0.4",
        BC_SYNC_SHUTDOWN_GRACE_S=str(grace),
        BC_SYNC_PREFETCH="4",
        SLOW_S=str(slow),
        STARTED_FILE=str(tmp_path / "started"),
        DONE_FILE=str(tmp_path / "done"),
    )
    return env


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize(("slow", "grace", "finishes"), [(1.0, 10.0, True), (30.0, 0.5, False)])
async def test_sigterm_during_slow_handler_loses_nothing(
    settings: Settings, tmp_path: Path, slow: float, grace: float, finishes: bool
) -> None:
    """In-flight handlers finish within the grace period, or their messages are requeued."""
    topo = Topology.from_settings(settings)
    # Declare the topology first so events published before the worker starts are queued.
    await (await started(settings, {})).stop(grace=0)
    ids = [f"ev-{i}" for i in range(6)]
    for i, id_ in enumerate(ids):
        await publish(settings, f.customer_event(str(i), id_=id_), CREATED)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.programs.slow_worker",
        env=_worker_env(settings, tmp_path, slow, grace),
        cwd=Path(__file__).resolve().parents[2],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        try:
            await wait_for(lambda: len(_lines(tmp_path / "started")) >= 4, timeout=30)
        except AssertionError:
            if proc.returncode is None:
                proc.kill()
            out, _ = await proc.communicate()
            raise AssertionError(out.decode()[-3000:]) from None
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()[-2000:]
    done = _lines(tmp_path / "done")
    remaining = await drain(settings, topo.exports.name)
    left = [json.loads(m.body)["id"] for m in remaining]
    # Nothing lost, nothing acked early: every event is either done or back in the queue.
    assert sorted(done + left) == sorted(ids)
    assert len(set(done) & set(left)) == 0
    if finishes:
        assert len(done) >= 4  # the 4 in flight (prefetch 4) finished within the grace
    else:
        assert done == []
        assert sorted(left) == sorted(ids)
