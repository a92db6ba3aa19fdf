"""End to end: Moment events through the real consumer, a dead letter, one digest by mail and
one ``bc.integration.failed`` event; a failure that heals on retry sends nothing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import aio_pika

from tests.support import factories as f
from tests.support.amqp import publish
from tests.support.db import KEY
from tests.support.notify import config, make_service
from tests.support.settings import make_settings
from tests.support.smtp import SmtpSink
from tests.support.wait import wait_for
from worker.config.crypto import SecretBox
from worker.config.settings import Settings
from worker.errors import Permanent, Transient
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.messaging.consumer import Consumer
from worker.messaging.publisher import Publisher
from worker.notify import NotificationRecorder, NotificationRepository
from worker.store import Store

ORG = f.ORG
TYPE = "moment.invoice.created"


async def test_a_dead_lettered_invoice_reaches_its_recipients_once(
    settings: Settings, smtp: SmtpSink
) -> None:
    s = make_settings(
        settings.outbox_dir.parent,
        amqp_url=settings.amqp_url.get_secret_value(),
        queue_prefix=settings.queue_prefix,
        exchange=settings.exchange,
        smtp_url=smtp.url,
        digest_first_delay_s=0,
        digest_window_s=900,
    )
    store = Store.from_url(s.database_url, secrets=SecretBox([KEY]))
    await store.migrate()
    await store.configs.put(ORG, config([{"email": "ekonomi@example.se"}, {"user_id": "u-17"}]))
    tries: Counter[str] = Counter()
    succeeded: list[str] = []

    async def handle(event: Event[Any]) -> Outcome:
        number = event.data.invoice.number
        tries[number] += 1
        if number == "1866":
            raise Permanent("BC-ACCOUNT-MISSING", "G/L account 9999 does not exist.")
        if tries[number] < 3:
            raise Transient("BC-UNAVAILABLE", "Business Central answered 503.")
        succeeded.append(number)
        return Outcome.ok()

    consumer = Consumer(
        s, {TYPE: handle}, observers=[NotificationRecorder(NotificationRepository(store))]
    )
    await consumer.start()
    connection = await aio_pika.connect_robust(s.amqp_url.get_secret_value())
    service = make_service(s, store, publisher=Publisher(connection, s.exchange))
    try:
        channel = await connection.channel()
        inbox = await channel.declare_queue(exclusive=True)
        await inbox.bind(s.exchange, "bc.integration.failed")
        await service.start()
        await publish(s, f.body(TYPE, {"invoice": f.invoice("1864")}), TYPE)
        await publish(s, f.body(TYPE, {"invoice": f.invoice("1866")}), TYPE)

        await wait_for(lambda: len(smtp.received) == 1 and succeeded == ["1864"], timeout=15)
        event = await wait_for(lambda: inbox.get(fail=False, timeout=2), timeout=10)
        await service.run_once()  # the healed invoice adds nothing to send
    finally:
        await service.stop()
        await consumer.stop()
        await connection.close()
        await store.close()

    assert len(smtp.received) == 1
    text = smtp.received[0].part("plain")
    assert "Invoice 1866: G/L account 9999 does not exist." in text
    assert "1864" not in text
    data = json.loads(event.body)["data"]
    assert data["recipient_user_id"] == "u-17"
    assert data["failures"][0]["code"] == "BC-ACCOUNT-MISSING"
