"""Warnings (a success with a value left out) in the notification store, on SQLite and
PostgreSQL: recorded once per object and code until the digest goes, never an open failure,
never resolved, purged with their digest."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.support import factories as f
from tests.support.db import MakeStore
from worker.events.envelope import parse
from worker.events.handlers import DataWarning, FailureReport, Outcome
from worker.notify import NotificationRecorder, NotificationRepository
from worker.notify.digest import compose
from worker.notify.store import FAILURE, RESOLVED, WARNING, utcnow
from worker.store import Store

ORG = "org-acme"
VAT = "BC-VAT-NUMBER-LEFT-OUT"


def customer_event(number: str) -> Any:
    return parse(f.body("moment.customer.updated", {"customer": f.customer(number)}, org=ORG))


def warned(message: str, code: str = VAT) -> Outcome:
    return Outcome.ok(customer="x", warnings=[DataWarning(code, message)])


async def claim_all(repo: NotificationRepository) -> int:
    digest = await repo.claim(ORG, [{"email": "a@b.se"}], first_delay_s=0, window_s=0)
    assert digest is not None
    return digest


async def test_the_same_warning_before_the_digest_is_one_item_and_after_it_a_new_one(
    store: Store,
) -> None:
    repo = NotificationRepository(store)
    recorder = NotificationRecorder(repo)
    await recorder.on_success(customer_event("50101"), warned("first"))
    await recorder.on_success(customer_event("50101"), warned("second"))
    await recorder.on_success(customer_event("50101"), warned("phone", "BC-PHONE-LEFT-OUT"))
    await recorder.on_success(customer_event("50102"), warned("other customer"))
    first = await claim_all(repo)
    items = await repo.digest_items(first)
    assert sorted((i.moment_number, i.code, i.message) for i in items) == [
        ("50101", "BC-PHONE-LEFT-OUT", "phone"),
        ("50101", VAT, "second"),
        ("50102", VAT, "other customer"),
    ]
    assert {i.kind for i in items} == {WARNING}

    await recorder.on_success(customer_event("50101"), warned("third"))
    second = await claim_all(repo)
    assert [(i.moment_number, i.message) for i in await repo.digest_items(second)] == [
        ("50101", "third")
    ]


async def test_a_warning_is_not_an_open_failure_and_is_never_resolved(store: Store) -> None:
    repo = NotificationRepository(store)
    recorder = NotificationRecorder(repo, ttl_s=0)
    await recorder.on_success(customer_event("50103"), warned("vat left out"))
    assert await repo.open_failures(ORG) == set()
    # A dead letter of the same customer, then its success: the failure is resolved, the
    # warning stays a warning.
    await recorder.on_failure(
        FailureReport(
            org=ORG,
            event_id="ev-1",
            event_type="moment.customer.updated",
            object_type="customer",
            moment_id="c-50103",
            moment_number="50103",
            code="BC-POSTING-GROUP-MISSING",
            message="Customer posting group 'X' does not exist.",
            attempts=1,
            final=True,
        )
    )
    await recorder.on_success(customer_event("50103"), Outcome.ok())
    items = await repo.digest_items(await claim_all(repo))
    kinds = sorted(i.kind for i in items)
    assert kinds == sorted([WARNING, FAILURE, RESOLVED])
    content = compose(ORG, items, utcnow(), utcnow())
    assert content.failed_total == 0 and content.resolved_total == 1
    assert content.warned_total == 1


async def test_warnings_go_with_their_sent_digest_when_it_is_purged(
    make_store: MakeStore,
) -> None:
    store = make_store()
    await store.migrate()
    repo = NotificationRepository(store)
    await NotificationRecorder(repo).on_success(customer_event("50104"), warned("left out"))
    digest = await claim_all(repo)
    await repo.record_attempt(digest, {"email:a@b.se": "sent"})
    later = utcnow() + timedelta(days=31)
    assert await repo.purge(keep_s=30 * 86400, keep_open_s=90 * 86400, now=later) == 2
    assert await repo.digest_items(digest) == []
