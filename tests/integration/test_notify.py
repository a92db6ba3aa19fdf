"""Failure notifications end to end through a real SMTP server, a real store (SQLite and
PostgreSQL) and, for Moment users, a real broker."""

from __future__ import annotations

import asyncio
import email
import json
import re
from datetime import timedelta
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.emulator import tls
from tests.support import factories as f
from tests.support.db import MakeStore
from tests.support.notify import CLIENT_SECRET, config, make_service
from tests.support.settings import make_settings
from tests.support.smtp import SMTP_PASSWORD, SmtpSink
from tests.support.wait import wait_for
from worker.config.settings import Settings
from worker.events.envelope import parse
from worker.events.handlers import FailureReport, Outcome
from worker.messaging.publisher import Publisher
from worker.notify import NotificationRecorder, NotificationRepository, digest_status
from worker.notify.recorder import OPEN_FAILURES_TTL_S, SWEEP_ABOVE
from worker.notify.store import utcnow
from worker.store import Store

ORG = "org-acme"
# Store-independent behaviour: one database kind is enough.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ADMIN = "ekonomi@example.se"
CFO = "cfo@example.se"


def report(
    number: str = "1866",
    *,
    code: str = "BC-ACCOUNT-MISSING",
    message: str = "G/L account 9999 does not exist in Business Central.",
    final: bool = True,
    notify_now: bool = False,
    object_type: str = "invoice",
    org: str = ORG,
) -> FailureReport:
    return FailureReport(
        org=org,
        event_id=f"ev-{number}",
        event_type=f"moment.{object_type}.created",
        object_type=object_type,
        moment_id=f"i-{number}",
        moment_number=number,
        code=code,
        message=message,
        attempts=3 if final else 1,
        final=final,
        notify_now=notify_now,
    )


def invoice_event(number: str) -> Any:
    return parse(f.body("moment.invoice.created", {"invoice": f.invoice(number)}, org=ORG))


def notify_settings(tmp_path: Path, sink: SmtpSink | None, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_url": sink.url if sink else None,
        "mail_from": "bc-sync@moment.example",
        "digest_first_delay_s": 0,
        "digest_window_s": 900,
    }
    values.update(over)
    return make_settings(tmp_path, **values)


async def setup_org(store: Store, recipients: list[Any]) -> None:
    await store.configs.put(ORG, config(recipients))


# --- the basics -------------------------------------------------------------------------------


async def test_a_dead_letter_sends_one_digest_with_code_object_and_fix(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    await setup_org(store, [{"email": ADMIN}, {"email": CFO}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(notify_settings(tmp_path, smtp), store)

    await recorder.on_failure(report("1866"))
    assert await service.run_once() == 1
    assert await service.run_once() == 0  # nothing new: nothing sent again

    assert len(smtp.received) == 1
    mail = smtp.received[0]
    assert sorted(mail.rcpt_tos) == [CFO, ADMIN]
    assert smtp.logins  # authenticated with the URL's credentials
    text, html = mail.part("plain"), mail.part("html")
    for body in (text, html):
        assert "BC-ACCOUNT-MISSING" in body
        assert "Invoice 1866" in body
        assert "Add the account in Business Central" in body  # the catalogue's fix text
    assert "1 problem needs your attention" in mail.message["Subject"]
    status = await digest_status(NotificationRepository(store), ORG)
    assert status["pending"]["failures"] == 0
    assert status["last_digest"]["sent_at"] is not None
    assert status["last_digest"]["delivered"] == 2


@SQLITE_ONLY
async def test_transient_failures_that_then_succeed_send_nothing(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    await setup_org(store, [{"email": ADMIN}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(notify_settings(tmp_path, smtp), store)

    for _ in range(3):
        await recorder.on_failure(report("1864", code="BC-UNAVAILABLE", final=False))
    await recorder.on_success(invoice_event("1864"), Outcome.ok())
    await service.run_once()

    assert smtp.received == []
    status = await digest_status(NotificationRepository(store), ORG)
    assert status["pending"] == {"failures": 0, "resolved": 0, "oldest_at": None, "due_at": None}
    assert status["last_digest"] is None


async def test_a_thousand_failures_make_one_mail_with_counts_and_twenty_examples(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    await setup_org(store, [{"email": ADMIN}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(notify_settings(tmp_path, smtp), store)

    await asyncio.gather(
        *(recorder.on_failure(report(str(2000 + i))) for i in range(700)),
        *(
            recorder.on_failure(
                report(
                    str(5000 + i),
                    object_type="customer",
                    code="BC-POSTING-GROUP-MISSING",
                    message="Customer posting group KUNDER-EXP does not exist.",
                )
            )
            for i in range(300)
        ),
    )
    assert await service.run_once() == 1
    await service.run_once()

    assert len(smtp.received) == 1
    text = smtp.received[0].part("plain")
    assert "1000 problems need your attention" in smtp.received[0].message["Subject"]
    assert "Affected: 700 (error code BC-ACCOUNT-MISSING)" in text
    assert "Affected: 300 (error code BC-POSTING-GROUP-MISSING)" in text
    examples = re.findall(r"^   - ", text, flags=re.M)
    assert 2 <= len(examples) <= 20
    assert "Customer 5" in text and "Invoice 2" in text  # both codes have examples


@SQLITE_ONLY
async def test_first_failure_goes_out_at_once_later_ones_wait_for_the_window(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    await setup_org(store, [{"email": ADMIN}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(
        notify_settings(tmp_path, smtp, digest_first_delay_s=60, digest_window_s=900), store
    )
    start = utcnow()
    await recorder.on_failure(report("1"))
    assert await service.run_once(now=start) == 0  # within the first minute: held
    status = await digest_status(store, ORG, service.settings)
    assert status["pending"]["failures"] == 1
    assert status["pending"]["due_at"] is not None
    assert await service.run_once(now=start + timedelta(seconds=61)) == 1
    await recorder.on_failure(report("2"))
    await recorder.on_failure(report("3"))
    assert await service.run_once(now=start + timedelta(seconds=300)) == 0  # inside the window
    assert len(smtp.received) == 1
    assert await service.run_once(now=start + timedelta(seconds=962)) == 1
    assert len(smtp.received) == 2
    second = smtp.received[1].part("plain")
    assert "Invoice 2" in second and "Invoice 3" in second and "Invoice 1:" not in second


async def test_a_resolved_object_appears_in_the_next_digest(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    await setup_org(store, [{"email": ADMIN}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(notify_settings(tmp_path, smtp, digest_window_s=60), store)

    await recorder.on_failure(report("1866"))
    assert await service.run_once() == 1
    await recorder.on_success(invoice_event("1866"), Outcome.ok())
    await recorder.on_success(invoice_event("1866"), Outcome.ok())  # redelivery: reported once
    await recorder.on_success(invoice_event("1867"), Outcome.ok())  # never failed: not reported
    assert await service.run_once(now=utcnow() + timedelta(seconds=61)) == 1  # the window passed

    assert len(smtp.received) == 2
    second = smtp.received[1]
    assert "1 problem resolved" in second.message["Subject"]
    text = second.part("plain")
    assert "Invoice 1866 was transferred to Business Central after all." in text
    assert "1867" not in text


async def test_a_failure_recorded_by_another_process_is_resolved_by_this_one(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    await setup_org(store, [{"email": ADMIN}])
    now = [0.0]
    here = NotificationRecorder(NotificationRepository(store), clock=lambda: now[0])
    there = NotificationRecorder(NotificationRepository(store))
    await here.on_success(invoice_event("1865"), Outcome.ok())  # reads: no open failures
    await there.on_failure(report("1866"))  # the dead letter happened in another worker
    now[0] += OPEN_FAILURES_TTL_S  # this process reads again at most this much later
    await here.on_success(invoice_event("1866"), Outcome.ok())  # e.g. replayed, then fine

    service = make_service(notify_settings(tmp_path, smtp, digest_first_delay_s=0), store)
    assert await service.run_once() == 1
    text = smtp.received[0].part("plain")
    assert "Invoice 1866 was transferred to Business Central after all." in text


@SQLITE_ONLY
async def test_the_recorder_keeps_only_recent_organizations_and_still_resolves(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    """Thousands of organizations pass through one process: its copies of their open failures
    expire and are dropped, and a failure of the first one is still resolved afterwards."""
    await setup_org(store, [{"email": ADMIN}])
    now = [0.0]
    recorder = NotificationRecorder(NotificationRepository(store), clock=lambda: now[0])
    await recorder.on_failure(report("1866"))
    for i in range(SWEEP_ABOVE + 200):
        other = f.body("moment.invoice.created", {"invoice": f.invoice(str(i))}, org=f"org-{i}")
        await recorder.on_success(parse(other), Outcome.ok())
        now[0] += OPEN_FAILURES_TTL_S / 100
    assert len(recorder._open) <= SWEEP_ABOVE + 1
    assert len(recorder._locks) <= SWEEP_ABOVE + 1

    now[0] += OPEN_FAILURES_TTL_S
    await recorder.on_success(invoice_event("1866"), Outcome.ok())
    service = make_service(notify_settings(tmp_path, smtp, digest_first_delay_s=0), store)
    assert await service.run_once() == 1
    assert "Invoice 1866 was transferred to Business Central after all." in smtp.received[-1].part(
        "plain"
    )


# --- delivery: outages, refusals, restarts, replicas --------------------------------------------


async def test_smtp_down_then_up_delivers_the_mail_once(store: Store, tmp_path: Path) -> None:
    sink = SmtpSink()  # not started: nothing listens on its port
    await setup_org(store, [{"email": ADMIN}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(notify_settings(tmp_path, sink), store)

    await recorder.on_failure(report("1866"))
    assert await service.run_once() == 0
    status = await digest_status(NotificationRepository(store), ORG)
    assert status["last_digest"]["sent_at"] is None
    assert status["last_digest"]["attempts"] == 1
    assert "could not be reached" in status["last_digest"]["last_error"]
    assert SMTP_PASSWORD not in status["last_digest"]["last_error"]

    await recorder.on_failure(report("1867"))  # arrives during the outage: waits for the next
    await sink.start()
    try:
        await wait_for(lambda: service.run_once(), timeout=10)
        for _ in range(3):
            await service.run_once()
    finally:
        await sink.stop()
    assert len(sink.received) == 1
    assert "Invoice 1866" in sink.received[0].part("plain")
    pending = (await digest_status(NotificationRepository(store), ORG))["pending"]
    assert pending["failures"] == 1  # 1867 waits for the next window, not lost


@SQLITE_ONLY
async def test_a_refused_recipient_does_not_stop_the_others(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    smtp.refuse.add("gone@example.se")
    await setup_org(store, [{"email": ADMIN}, {"email": "gone@example.se"}, {"email": CFO}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(notify_settings(tmp_path, smtp), store)

    await recorder.on_failure(report("1866"))
    assert await service.run_once() == 1

    assert len(smtp.to(ADMIN)) == 1 and len(smtp.to(CFO)) == 1
    assert smtp.to("gone@example.se") == []
    status = (await digest_status(NotificationRepository(store), ORG))["last_digest"]
    assert (status["delivered"], status["refused"]) == (2, 1)


@SQLITE_ONLY
async def test_a_deferred_recipient_gets_it_later_without_duplicates_for_the_others(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    smtp.defer.add(CFO)
    await setup_org(store, [{"email": ADMIN}, {"email": CFO}])
    recorder = NotificationRecorder(NotificationRepository(store))
    service = make_service(notify_settings(tmp_path, smtp), store)

    await recorder.on_failure(report("1866"))
    assert await service.run_once() == 0
    smtp.defer.clear()
    await wait_for(lambda: service.run_once(), timeout=10)

    assert len(smtp.to(ADMIN)) == 1 and len(smtp.to(CFO)) == 1


async def test_pending_notifications_survive_a_restart(
    make_store: MakeStore, smtp: SmtpSink, tmp_path: Path
) -> None:
    first = make_store()
    await first.migrate()
    await setup_org(first, [{"email": ADMIN}])
    await NotificationRecorder(NotificationRepository(first)).on_failure(report("1866"))
    await first.close()  # the process dies before any digest went out

    second = make_store()
    await second.migrate()
    service = make_service(notify_settings(tmp_path, smtp, digest_window_s=0.05), second)
    await service.start()
    try:
        await wait_for(lambda: len(smtp.received) == 1, timeout=10)
    finally:
        await service.stop()
    assert "Invoice 1866" in smtp.received[0].part("plain")


async def test_several_replicas_send_each_digest_once(
    make_store: MakeStore, smtp: SmtpSink, tmp_path: Path
) -> None:
    stores = [make_store() for _ in range(3)]
    await stores[0].migrate()
    await setup_org(stores[0], [{"email": ADMIN}])
    recorder = NotificationRecorder(NotificationRepository(stores[0]))
    for i in range(50):
        await recorder.on_failure(report(str(3000 + i)))
    settings = notify_settings(tmp_path, smtp)
    services = [make_service(settings, s) for s in stores]
    for _ in range(3):
        await asyncio.gather(*(s.run_once() for s in services))
    assert len(smtp.received) == 1
    assert "Affected: 50 " in smtp.received[0].part("plain")


@SQLITE_ONLY
async def test_without_smtp_the_mail_is_written_to_the_outbox(store: Store, tmp_path: Path) -> None:
    await setup_org(store, [{"email": ADMIN}])
    settings = notify_settings(tmp_path, None)
    service = make_service(settings, store)
    await NotificationRecorder(NotificationRepository(store)).on_failure(report("1866"))
    assert await service.run_once() == 1

    files = list(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert msg["To"] == ADMIN
    assert "needs your attention" in msg["Subject"]
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "Invoice 1866" in body.get_content()


# --- secrets ----------------------------------------------------------------------------------

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2FwaSJ9.c2lnbmF0dXJlLXZhbHVl"


@SQLITE_ONLY
async def test_no_secret_or_token_appears_in_any_mail_or_event(
    store: Store, smtp: SmtpSink, tmp_path: Path, settings: Settings
) -> None:
    await setup_org(store, [{"email": ADMIN}, {"user_id": "u-17"}])
    recorder = NotificationRecorder(NotificationRepository(store))
    leaky = [
        f"Entra answered 401 for Bearer {JWT}",
        f"token request with client_secret={CLIENT_SECRET} was refused",
        f"the secret {CLIENT_SECRET} was rejected",
        f"connecting to smtp://notify:{SMTP_PASSWORD}@mail failed",
        f"raw token {JWT}",
        f"the mail password {SMTP_PASSWORD} appeared in a reply",
    ]
    for i, message in enumerate(leaky):
        await recorder.on_failure(
            report(
                str(100 + i),
                code="BC-CREDENTIALS-REJECTED",
                message=message,
                final=False,
                notify_now=True,
            )
        )
    events: list[bytes] = []
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(settings.exchange, "topic", durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "bc.integration.failed")
        service = make_service(
            notify_settings(tmp_path, smtp),
            store,
            publisher=Publisher(connection, settings.exchange),
        )
        assert await service.run_once() == 1
        got = await queue.get(timeout=5)
        assert got is not None
        events.append(got.body)

    assert len(smtp.received) == 1
    everything = [
        smtp.received[0].raw.decode("utf-8", "replace"),
        smtp.received[0].part("plain"),
        smtp.received[0].part("html"),
        *(e.decode() for e in events),
    ]
    for blob in everything:
        for secret in (CLIENT_SECRET, SMTP_PASSWORD, JWT, "eyJhbGci"):
            assert secret not in blob
        assert "Traceback" not in blob
    # Still useful: the admin learns what happened and what to do.
    assert "Check the tenant ID and client secret" in smtp.received[0].part("plain")


# --- Moment users -----------------------------------------------------------------------------


@SQLITE_ONLY
async def test_moment_users_get_one_integration_failed_event_each(
    store: Store, smtp: SmtpSink, tmp_path: Path, settings: Settings
) -> None:
    await setup_org(store, [{"user_id": "u-17"}, {"user_id": "u-18"}, {"email": ADMIN}])
    recorder = NotificationRecorder(NotificationRepository(store))
    await recorder.on_failure(report("1866"))
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(settings.exchange, "topic", durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "bc.integration.failed")
        service = make_service(
            notify_settings(tmp_path, smtp),
            store,
            publisher=Publisher(connection, settings.exchange),
        )
        assert await service.run_once() == 1
        await service.run_once()
        got: list[dict[str, Any]] = []
        while (msg := await queue.get(fail=False, timeout=2)) is not None:
            got.append(json.loads(msg.body))
            await msg.ack()

    assert sorted(e["data"]["recipient_user_id"] for e in got) == ["u-17", "u-18"]
    for event in got:
        assert event["type"] == "bc.integration.failed"
        assert event["organizationid"] == ORG
        (group,) = event["data"]["failures"]
        assert group["code"] == "BC-ACCOUNT-MISSING" and group["count"] == 1
        assert group["fix"].startswith("Add the account")
        assert group["examples"][0] == {
            "object_type": "invoice",
            "moment_number": "1866",
            "message": "G/L account 9999 does not exist in Business Central.",
        }
    assert len(smtp.received) == 1  # the e-mail recipient got the same digest


@SQLITE_ONLY
async def test_a_failed_event_publish_is_retried_without_mailing_again(
    store: Store, smtp: SmtpSink, tmp_path: Path, settings: Settings
) -> None:
    await setup_org(store, [{"email": ADMIN}, {"user_id": "u-17"}])
    await NotificationRecorder(NotificationRepository(store)).on_failure(report("1866"))
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(settings.exchange, "topic", durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "bc.integration.failed")
        # The broker is gone for the first attempt: a publisher on a closed connection.
        gone = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
        await gone.close()
        first = make_service(
            notify_settings(tmp_path, smtp), store, publisher=Publisher(gone, settings.exchange)
        )
        assert await first.run_once() == 0
        assert len(smtp.received) == 1  # the mail went out; the event did not

        second = make_service(
            notify_settings(tmp_path, smtp),
            store,
            publisher=Publisher(connection, settings.exchange),
        )
        await wait_for(lambda: second.run_once(), timeout=10)
        got = await queue.get(timeout=5)
        assert got is not None
        assert json.loads(got.body)["data"]["recipient_user_id"] == "u-17"
    assert len(smtp.received) == 1


@SQLITE_ONLY
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
async def test_mail_goes_over_tls_with_a_login(
    store: Store, tmp_path: Path, implicit: bool
) -> None:
    cert = tls.generate(tmp_path / "cert")
    sink = SmtpSink(tls=tls.server_context(cert), implicit_tls=implicit)
    await sink.start()
    try:
        await setup_org(store, [{"email": ADMIN}])
        settings = notify_settings(tmp_path, sink, ca_file=cert.cert)
        await NotificationRecorder(NotificationRepository(store)).on_failure(report("1866"))
        assert await make_service(settings, store).run_once() == 1
    finally:
        await sink.stop()
    assert len(sink.to(ADMIN)) == 1 and sink.logins == ["notify"]


async def test_old_sent_digests_are_purged_but_open_failures_stay_resolvable(
    store: Store, smtp: SmtpSink, tmp_path: Path
) -> None:
    await setup_org(store, [{"email": ADMIN}])
    repo = NotificationRepository(store)
    recorder = NotificationRecorder(repo)
    service = make_service(notify_settings(tmp_path, smtp, digest_window_s=60), store)
    await recorder.on_failure(report("1"))
    await recorder.on_failure(report("2"))
    assert await service.run_once() == 1
    await recorder.on_success(invoice_event("1"), Outcome.ok())
    assert await service.run_once(now=utcnow() + timedelta(seconds=61)) == 1  # a window later

    later = utcnow() + timedelta(days=31)
    assert await repo.purge(keep_s=30 * 86400, keep_open_s=90 * 86400, now=later) > 0
    # Invoice 2 never succeeded: its failure is kept, and its late success is still news.
    await recorder.on_success(invoice_event("2"), Outcome.ok())
    assert await service.run_once(now=utcnow() + timedelta(seconds=122)) == 1  # another window
    assert "Invoice 2 was transferred" in smtp.received[-1].part("plain")


async def test_concurrent_claims_never_make_an_empty_or_double_digest(
    make_store: MakeStore,
) -> None:
    stores = [make_store() for _ in range(4)]
    await stores[0].migrate()
    repos = [NotificationRepository(s) for s in stores]
    for i in range(20):
        await repos[0].add_failure(ORG, code="BC-ACCOUNT-MISSING", message="m", moment_id=str(i))
    # No lease here: the claim itself must hold when two replicas race past it.
    ids = await asyncio.gather(
        *(r.claim(ORG, [{"email": ADMIN}], first_delay_s=0, window_s=0) for r in repos)
    )
    claimed = [i for i in ids if i is not None]
    assert claimed
    items = [len(await repos[0].digest_items(i)) for i in claimed]
    assert sum(items) == 20 and all(n > 0 for n in items)
