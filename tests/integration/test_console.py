"""The operations console over HTTP (no browser): sign-in, sessions, CSRF, read-only tokens,
the dead-letter index and the actions, against a real worker (roles consume + api), a real
broker, store and the BC emulator. The browser tests (``test_console_browser.py``) drive the
same pages in Chromium."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import aiohttp
from structlog.testing import capture_logs

from tests.support.amqp import depth
from tests.support.console import (
    OPS_TOKEN,
    ORG,
    READ_TOKEN,
    Browser,
    ConsoleWorker,
    invoice_on_account,
)
from tests.support.wait import wait_for
from worker.errors import CATALOGUE
from worker.ops.dlq.runs import IndexReconciler
from worker.store import utcnow


async def dead_lettered_invoice(worker: ConsoleWorker, number: str = "1866") -> str:
    """An invoice on G/L account 9999, missing in BC: a real dead letter, indexed."""
    await worker.save_config()
    event_id = await worker.publish("moment.invoice.created", invoice_on_account(number, "9999"))

    async def indexed() -> Any:
        return await worker.console.index.get(event_id)

    await wait_for(indexed, 20, 0.1)
    return event_id


async def test_a_wrong_token_never_gets_a_session(worker: ConsoleWorker, browser: Browser) -> None:
    status, text = await browser.sign_in("not-the-token")
    assert status == 401
    assert "That API token is not valid." in text
    assert browser.session_cookie() is None
    status, _ = await browser.get("/console/organizations")
    assert "Sign in" in _  # sent back to the sign-in page
    # A forged cookie is no session either.
    browser.http.cookie_jar.update_cookies({"bcsync_session": "forged"})
    async with browser.http.get(
        worker.url + "/console/organizations", allow_redirects=False
    ) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/console/sign-in")


async def test_sign_in_cookie_flags_and_sign_out(worker: ConsoleWorker, browser: Browser) -> None:
    await browser.get("/console/sign-in")
    async with browser.http.post(
        worker.url + "/console/sign-in",
        data={"token": OPS_TOKEN, "csrf": browser.csrf or ""},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303
        cookie = resp.cookies["bcsync_session"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/console"
        assert not cookie["secure"]  # plain HTTP here
        raw = cookie.value
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    # The store keeps only a hash of the session id.
    rows = await worker.console.sessions.prune()
    assert rows == 0
    status, text = await browser.get("/console/organizations")
    assert status == 200 and "Signed in as <strong>ops</strong>" in text
    assert raw not in text and OPS_TOKEN not in text
    status, text, _ = await browser.post("/console/sign-out", {})
    assert "Sign in" in text
    # The old cookie no longer opens anything.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        other.cookie_jar.update_cookies({"bcsync_session": raw})
        async with other.get(worker.url + "/console/organizations", allow_redirects=False) as r:
            assert r.status == 303


async def test_secure_cookie_behind_an_https_proxy(worker: ConsoleWorker, browser: Browser) -> None:
    await browser.get("/console/sign-in", headers={"X-Forwarded-Proto": "https"})
    async with browser.http.get(
        worker.url + "/console/sign-in", headers={"X-Forwarded-Proto": "https"}
    ) as resp:
        assert resp.cookies["bcsync_signin"]["secure"] is True


async def test_sign_in_attempts_are_rate_limited(worker: ConsoleWorker, browser: Browser) -> None:
    limiter = worker.console.limiter
    for _ in range(limiter.per_address):
        status, _text = await browser.sign_in("wrong-token-guess")
        assert status == 401
    # Now even the right token is refused (no oracle for a guesser), with Retry-After.
    await browser.get("/console/sign-in")
    status, text, resp = await browser.post("/console/sign-in", {"token": OPS_TOKEN})
    assert status == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in text
    assert browser.session_cookie() is None


async def test_global_sign_in_limit_covers_every_address(worker: ConsoleWorker) -> None:
    limiter = worker.console.limiter
    for i in range(limiter.overall):
        await limiter.failed(f"10.0.{i // 250}.{i % 250}")
    assert await limiter.retry_after("192.0.2.1") is not None


async def test_a_form_without_the_csrf_token_is_refused(
    worker: ConsoleWorker, browser: Browser
) -> None:
    await dead_lettered_invoice(worker)
    await browser.sign_in(OPS_TOKEN)
    status, text, _ = await browser.post(
        "/console/dead-letters/note",
        {"by": "code", "key": "BC-ACCOUNT-MISSING", "note": "forged"},
        csrf=False,
    )
    assert status == 403
    assert "security token" in text
    status, text, _ = await browser.post(
        "/console/dead-letters/replay",
        {"by": "code", "key": "BC-ACCOUNT-MISSING", "csrf": "wrong"},
        csrf=False,
    )
    assert status == 403
    assert await worker.console.index.note("code", "BC-ACCOUNT-MISSING") is None
    assert await worker.console.operations.recent() == []
    # The sign-in form has its own token: without it, no session even with the right token.
    other = Browser(worker.url)
    try:
        status, _text, _ = await other.post("/console/sign-in", {"token": OPS_TOKEN}, csrf=False)
        assert status == 403
        assert other.session_cookie() is None
    finally:
        await other.close()
    # A cross-site POST (another Origin) is refused even with the right token.
    await browser.get("/console/dead-letters")
    status, _text, _ = await browser.post(
        "/console/dead-letters/note",
        {"by": "code", "key": "BC-ACCOUNT-MISSING", "note": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert status == 403


async def test_read_only_token_sees_everything_and_changes_nothing(
    worker: ConsoleWorker, browser: Browser
) -> None:
    event_id = await dead_lettered_invoice(worker)
    status, _ = await browser.sign_in(READ_TOKEN)
    status, text = await browser.get("/console/dead-letters/group?by=code&key=BC-ACCOUNT-MISSING")
    assert status == 200
    assert "invoice 1866" in text
    assert "read-only" in text
    assert ">Replay<" not in text and "Archive" not in text and "Save note" not in text
    status, text = await browser.get(f"/console/dead-letters/message?id={event_id}")
    assert status == 200 and "Replay this message" not in text
    # Forged actions, with a valid CSRF token of the read-only session: 403, nothing happens.
    with capture_logs() as logs:
        for path, form in (
            ("/console/dead-letters/replay", {"by": "code", "key": "BC-ACCOUNT-MISSING"}),
            ("/console/dead-letters/replay-one", {"id": event_id}),
            (
                "/console/dead-letters/archive",
                {"by": "code", "key": "BC-ACCOUNT-MISSING", "reason": "x"},
            ),
            (
                "/console/dead-letters/note",
                {"by": "code", "key": "BC-ACCOUNT-MISSING", "note": "x"},
            ),
        ):
            status, text, _ = await browser.post(path, form)
            assert status == 403, path
            assert "may only read" in text
    assert not [e for e in logs if e["event"] == "audit"]
    assert await worker.console.operations.recent() == []
    assert await depth(worker.settings, worker.settings.queue("dead")) == 1

    # The same token on the admin API: reads work, every write is 403.
    base = f"{worker.url}/v1/organizations/{ORG}/integrations/business-central"
    auth = {"Authorization": f"Bearer {READ_TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(base) as resp:
            assert resp.status == 200
        async with http.get(f"{worker.url}/v1/dead-letters") as resp:
            assert resp.status == 200
        for method, url, body in (
            ("PUT", base, {"tenant_id": "x"}),
            ("DELETE", base, None),
            ("POST", f"{worker.url}/v1/dead-letters/replay", {"dry_run": False}),
        ):
            async with http.request(method, url, json=body) as resp:
                assert resp.status == 403, (method, url)
                assert (await resp.json())["error"] == "forbidden"
        # The options call only reads (it verifies and lists choices): allowed.
        async with http.post(base + "/options", json={}) as resp:
            assert resp.status != 403
    async with aiohttp.ClientSession(headers=auth) as http, http.get(base) as resp:
        assert (await resp.json())["company_name"]  # config still there
    assert await depth(worker.settings, worker.settings.queue("dead")) == 1


async def test_pages_show_the_index_and_never_a_secret(
    worker: ConsoleWorker, browser: Browser
) -> None:
    event_id = await dead_lettered_invoice(worker)
    await browser.sign_in(OPS_TOKEN)
    status, text = await browser.get("/console/organizations")
    assert status == 200
    assert ORG in text and "CRONUS Sverige AB" in text
    status, text = await browser.get(f"/console/organizations/{ORG}")
    assert status == 200
    assert "client secret is stored encrypted and never shown" in text
    assert worker.emulator.client_secret not in text
    assert "BC-ACCOUNT-MISSING" in text
    status, text = await browser.get("/console/dead-letters")
    assert status == 200
    assert "BC-ACCOUNT-MISSING" in text
    assert CATALOGUE["BC-ACCOUNT-MISSING"].fix in html.unescape(text)
    for by in ("org", "type"):
        status, text = await browser.get(f"/console/dead-letters?by={by}")
        assert status == 200
        assert (ORG if by == "org" else "moment.invoice.created") in text
    status, text = await browser.get(f"/console/dead-letters/message?id={event_id}")
    assert status == 200
    assert "x-bc-error-code" in text and "9999" in text
    assert "Failure history" in text


async def test_replay_a_group_after_fixing_the_cause(
    worker: ConsoleWorker, browser: Browser
) -> None:
    await dead_lettered_invoice(worker)
    await browser.sign_in(OPS_TOKEN)
    status, text = await browser.get("/console/dead-letters/replay?by=code&key=BC-ACCOUNT-MISSING")
    assert re.search(r"<strong>1</strong> dead letter will", text)
    await worker.add_account("9999")
    with capture_logs() as logs:
        status, text, resp = await browser.post(
            "/console/dead-letters/replay", {"by": "code", "key": "BC-ACCOUNT-MISSING"}
        )
        assert status == 200
        op_id = str(resp.url).rsplit("/", 1)[-1]
        op = await worker.console.operations.finished(op_id)
    assert op is not None and op.state == "done" and op.done == 1
    [audit] = [e for e in logs if e["event"] == "audit"]
    assert audit["action"] == "dlq.replay" and audit["actor"] == "console:ops"
    assert audit["replayed"] == 1
    assert await wait_for(lambda: worker.posted_invoice("1866"), 20, 0.1)
    assert await worker.console.index.totals() == (0, 0)
    status, text = await browser.get(f"/console/operations/{op_id}")
    assert "Finished: 1 of 1 replayed" in text
    # The integration log (the sync ledger) has the invoice synced, with its steps.
    status, text = await browser.get(f"/console/log?org={ORG}&number=1866")
    assert status == 200
    assert "invoice 1866: synced" in text
    assert "Steps" in text
    # The reconciliation of its month finds it posted in BC.
    status, text = await browser.get(
        f"/console/reconciliation?org={ORG}&from=2026-11-01&to=2026-11-30"
    )
    assert status == 200
    assert re.search(r"Matched</th>\s*<td[^>]*>1</td>", text), text


async def test_one_operation_at_a_time_per_group(worker: ConsoleWorker) -> None:
    await dead_lettered_invoice(worker)
    ops = worker.console.operations
    async with ops._turn:  # hold this process's turn: the first one stays queued
        first = await ops.submit("archive", "code", "BC-ACCOUNT-MISSING", actor="t", reason="r")
        try:
            await ops.submit("replay", "code", "BC-ACCOUNT-MISSING", actor="t")
        except Exception as exc:
            assert type(exc).__name__ == "OperationBusy"
            assert getattr(exc, "existing", None) == first.id
        else:
            raise AssertionError("a second operation on the group was accepted")
    done = await ops.finished(first.id)
    assert done is not None and done.state == "done"


async def test_archive_with_a_reason_then_bring_back(
    worker: ConsoleWorker, browser: Browser
) -> None:
    event_id = await dead_lettered_invoice(worker)
    await browser.sign_in(OPS_TOKEN)
    status, text, _ = await browser.post(
        "/console/dead-letters/archive", {"by": "code", "key": "BC-ACCOUNT-MISSING", "reason": ""}
    )
    assert status == 422  # a reason is required
    with capture_logs() as logs:
        status, text, resp = await browser.post(
            "/console/dead-letters/archive",
            {"by": "code", "key": "BC-ACCOUNT-MISSING", "reason": "customer closed its books"},
        )
        op = await worker.console.operations.finished(str(resp.url).rsplit("/", 1)[-1])
    assert op is not None and op.state == "done" and op.done == 1
    [audit] = [e for e in logs if e["event"] == "audit"]
    assert (audit["action"], audit["actor"], audit["reason"]) == (
        "dlq.archive",
        "console:ops",
        "customer closed its books",
    )
    settings = worker.settings
    assert await depth(settings, settings.queue("dead")) == 0
    assert await depth(settings, settings.queue("dead.archived")) == 1
    assert await worker.console.index.totals() == (0, 1)
    status, text = await browser.get("/console/dead-letters?archived=1")
    assert "BC-ACCOUNT-MISSING" in text and "1 archived" in text
    status, text = await browser.get(f"/console/dead-letters/message?id={event_id}")
    assert "customer closed its books" in text
    # Archived dead letters are out of every replay.
    result = await worker.console.operations.dead_letters.replay(actor="test", dry_run=True)
    assert result.matched == 0

    status, text, resp = await browser.post(
        "/console/dead-letters/restore", {"by": "code", "key": "BC-ACCOUNT-MISSING"}
    )
    op = await worker.console.operations.finished(str(resp.url).rsplit("/", 1)[-1])
    assert op is not None and op.state == "done"
    assert await depth(settings, settings.queue("dead")) == 1
    assert await worker.console.index.totals() == (1, 0)


async def test_note_on_a_group_is_kept_and_audited(worker: ConsoleWorker, browser: Browser) -> None:
    await dead_lettered_invoice(worker)
    await browser.sign_in(OPS_TOKEN)
    await browser.get("/console/dead-letters/group?by=code&key=BC-ACCOUNT-MISSING")
    with capture_logs() as logs:
        status, text, _ = await browser.post(
            "/console/dead-letters/note",
            {"by": "code", "key": "BC-ACCOUNT-MISSING", "note": "Waiting for Anna to add 9999"},
        )
    assert status == 200 and "Waiting for Anna to add 9999" in text
    [audit] = [e for e in logs if e["event"] == "audit"]
    assert (audit["action"], audit["actor"]) == ("dlq.note", "console:ops")
    status, text = await browser.get("/console/dead-letters")
    assert "Waiting for Anna to add 9999" in text


async def test_the_index_heals_after_a_crash_between_publish_and_index(
    worker: ConsoleWorker,
) -> None:
    """A dead letter whose index write was lost (crash) is found by the reconcile, and a row
    whose dead letter is gone is removed; a row indexed during the read is kept."""
    event_id = await dead_lettered_invoice(worker)
    index = worker.console.index
    reconciler = next(s for s in worker.services if isinstance(s, IndexReconciler))
    assert await reconciler.check() is True  # a process's first check reads the queues once
    async with worker.console.store.write() as conn:
        await conn.execute(index.table.delete())
    # Then a check only notes a difference (a dead letter is published and indexed a moment
    # apart); the next one reconciles.
    assert await reconciler.check() is False
    assert await reconciler.check() is True
    assert (await index.totals()) == (1, 0)
    assert await index.get(event_id) is not None

    ghost = await index.get(event_id)
    assert ghost is not None
    letters = await worker.console.operations.dead_letters.list_letters()
    [letter] = letters
    fresh = letter.__class__(**{**letter.__dict__, "id": "ghost-after-start"})
    await index.add(fresh)
    # The read started before the ghost was indexed: kept. One indexed before: removed.
    changes = await index.reconcile(letters, [], started=utcnow() - timedelta(minutes=1))
    assert changes["removed"] == 0
    changes = await index.reconcile(letters, [], started=utcnow() + timedelta(seconds=1))
    assert changes["removed"] == 1
    assert await index.get("ghost-after-start") is None


async def test_an_interrupted_operation_is_marked_failed(worker: ConsoleWorker) -> None:
    ops = worker.console.operations
    await dead_lettered_invoice(worker)
    now = utcnow()
    async with worker.console.store.write() as conn:
        await conn.execute(
            ops.table.insert().values(
                id="0000-stale",
                kind="replay",
                group_by="code",
                group_key="BC-ACCOUNT-MISSING",
                filters={},
                actor="console:ops",
                state="running",
                active_key="code:BC-ACCOUNT-MISSING",
                expected=1,
                scanned=0,
                done=0,
                owner="another-replica",
                heartbeat_at=now - timedelta(minutes=5),
                created_at=now - timedelta(minutes=6),
            )
        )
    assert await ops.fail_stale() == 1
    stale = await ops.get("0000-stale")
    assert stale is not None and stale.state == "failed" and "interrupted" in (stale.error or "")
    # The group is free again, and nothing was replayed by the dead run.
    assert await ops.active_for("code", "BC-ACCOUNT-MISSING") is None
    assert await depth(worker.settings, worker.settings.queue("dead")) == 1
