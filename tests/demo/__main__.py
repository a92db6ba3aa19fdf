"""``make demo``: the product end to end against the local BC emulator, in a few seconds.
``make demo KEEP=1`` (``python -m tests.demo --keep``) then keeps everything running, with the
operations console at the printed URL and the demo's API tokens printed to sign in with, until
Ctrl-C.

Runs from the repository root (the emulator lives in ``tests/emulator``). It needs a RabbitMQ
broker at ``BC_SYNC_AMQP_URL`` (default localhost) and uses its own queue prefix and exchange,
deleted again at the end, so it never touches a real deployment's queues. Everything else
(SQLite, the outbox, the emulator's certificate) lives in a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aio_pika
import aiohttp
from aio_pika.abc import AbstractConnection
from cryptography.fernet import Fernet

from tests.support.net import free_port
from tests.support.wait import wait_for
from worker.config.settings import Settings, SettingsError, load_settings
from worker.log import configure
from worker.messaging.tls import amqp_tls

PREFIX = "bc-sync-demo"
EXCHANGE = "bc-sync-demo.events"
WAIT_S = 60.0
NO_BROKER = (
    "demo: no RabbitMQ broker answers at BC_SYNC_AMQP_URL (default localhost:5672). Start "
    "one: `docker compose -f deploy/docker-compose.yml up -d rabbitmq` or "
    "`apt-get install rabbitmq-server && rabbitmq-server -detached`."
)


async def _connect(settings: Settings) -> AbstractConnection | None:
    # The one-line hint below says it all; aiormq would log the refused connection too.
    quiet = logging.getLogger("aiormq.connection")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return await asyncio.wait_for(
            aio_pika.connect(
                settings.amqp_url.get_secret_value(),
                **amqp_tls(settings),
                client_properties={"connection_name": "bc-sync demo"},
            ),
            5,
        )
    except Exception:
        return None
    finally:
        quiet.setLevel(level)


async def _drop_topology(connection: AbstractConnection, settings: Settings) -> None:
    """Delete the demo's queues and exchange (left over by an interrupted run, or ours)."""
    from worker.messaging.topology import Topology

    channel = await connection.channel()
    for spec in Topology.from_settings(settings).queues:
        await channel.queue_delete(spec.name)
    await channel.exchange_delete(settings.exchange)
    await channel.close()


async def main(keep: bool = False) -> int:
    try:
        base = load_settings()
    except SettingsError as exc:
        print(f"demo: invalid setting: {exc}")
        return 2
    amqp = base.amqp_url.get_secret_value()
    connection = await _connect(base)
    if connection is None:
        print(NO_BROKER)
        return 1
    configure("console", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="bc-sync-demo-"))
    started = time.monotonic()
    try:
        result = await _run(connection, amqp, work, keep=keep)
    finally:
        await connection.close()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nFinished in {time.monotonic() - started:.0f} s: worker and emulator stopped, demo "
        "queues and exchange deleted."
    )
    return result


async def _run(connection: AbstractConnection, amqp: str, work: Path, *, keep: bool = False) -> int:
    # Imported here so that a missing broker is reported before the heavier imports.
    from tests.demo.summary import Observed, expected_expenses, print_summary, read_mail
    from tests.demo.world import (
        ORG,
        PAID_AMOUNT,
        PAID_INVOICE,
        PERIOD,
        config_body,
        event_body,
        sample_events,
    )
    from tests.emulator.seed import DEMO, demo_seed
    from tests.emulator.server import CompanyRef, EmulatorServer
    from worker.app import build_services
    from worker.cli.reconcile import render_summary
    from worker.events.envelope import CONTENT_TYPE
    from worker.ops.dlq import list_dead_letters
    from worker.runtime import Service

    async with EmulatorServer(cert_dir=work) as emulator:
        await emulator.control.seed(demo_seed())
        ref = CompanyRef(DEMO.tenant_id, DEMO.environment, DEMO.company_name)
        before = await emulator.control.company_state(ref)
        token = secrets.token_urlsafe(24)
        # The console's read-only token (name=token:read): sees everything, changes nothing.
        support = secrets.token_urlsafe(24)
        settings = load_settings(
            amqp_url=amqp,
            queue_prefix=PREFIX,
            exchange=EXCHANGE,
            database_url=f"sqlite+aiosqlite:///{work / 'bc-sync.db'}",
            bc_api_url=emulator.url,
            authority_url=emulator.url,
            ca_file=emulator.ca_file,
            client_id=DEMO.client_id,
            secret_key=Fernet.generate_key().decode(),
            api_token=f"ops={token},support={support}:read",
            http_host="127.0.0.1",
            http_port=free_port(),
            smtp_url=None,
            outbox_dir=work / "outbox",
            retry_delays="1,2",
            poll_interval_s=2,
            payments_interval_s=1,
            digest_first_delay_s=2,
            shutdown_grace_s=5,
            demo=True,
        )
        api = f"http://{settings.http_host}:{settings.http_port}"
        print(
            f"BC emulator at {emulator.url} (company {DEMO.company_name!r}, tenant "
            f"{DEMO.tenant_domain})"
        )
        await _drop_topology(connection, settings)
        services: list[Service] = await build_services(
            settings, ("consume", "poll", "api", "notify")
        )
        running: list[Service] = []
        try:
            for service in services:
                await service.start()
                running.append(service)
            print(f"worker running with roles consume, poll, api, notify; admin API at {api}")
            print(f"operations console at {api}/console")
            observed = Observed()
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(settings.exchange)
            listen = await channel.declare_queue(exclusive=True, auto_delete=True)
            await listen.bind(exchange, routing_key="bc.#")
            await listen.consume(observed.on_message)

            url = f"{api}/v1/organizations/{ORG}/integrations/business-central"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
                for label, body in (
                    ("save config", config_body()),
                    (
                        "save again (secret left blank: the stored one is kept)",
                        config_body(with_secret=False),
                    ),
                ):
                    async with http.put(url, json=body) as resp:
                        answer = await resp.json()
                        print(
                            f"PUT {url.removeprefix(api)}: {label}: {resp.status} "
                            f"{answer.get('status') or json.dumps(answer)}"
                        )
                        if resp.status not in (200, 201):
                            return 1

            events = sample_events()
            for type_, data in events:
                await exchange.publish(
                    aio_pika.Message(
                        event_body(type_, data),
                        content_type=CONTENT_TYPE,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=type_,
                )
            print(f"published {len(events)} Moment events; waiting for the worker ...")

            wanted = {
                "bc.customer.exported": sum(t == "moment.customer.created" for t, _ in events),
                "bc.project.exported": sum(t == "moment.project.created" for t, _ in events),
                "bc.invoice.exported": sum(
                    t == "moment.invoice.created" and d["invoice"].get("kind") != "credit_note"
                    for t, d in events
                )
                - 1,
                "bc.credit_note.exported": sum(
                    d.get("invoice", {}).get("kind") == "credit_note" for _, d in events
                ),
                "bc.expense.imported": expected_expenses(
                    before, str(config_body()["expenses_from_date"]), "PROJEKT"
                ),
                "bc.integration.failed": 1,
            }
            dead_queue = settings.queue("dead")

            async def done() -> bool:
                counts = observed.counts()
                if any(counts[t] < n for t, n in wanted.items()):
                    return False
                if read_mail(settings.outbox_dir) is None:
                    return False
                depth = await channel.declare_queue(dead_queue, passive=True)
                return (depth.declaration_result.message_count or 0) >= 1

            complete = await wait_for(done, WAIT_S, 0.25, fail=False)
            if not complete:
                counts = observed.counts()
                missing = {t: f"{counts[t]}/{n}" for t, n in wanted.items() if counts[t] < n}
                print(f"demo: not everything arrived within {WAIT_S:.0f} s: {missing}")
            dead = await list_dead_letters(settings, connection=connection)
            after = await emulator.control.company_state(ref)
            print_summary(before, after, observed, dead, read_mail(settings.outbox_dir))

            # A payment arrives in BC: the payment import (poll role) tells Moment.
            exported = next(
                d
                for d in observed.of("bc.invoice.exported")
                if d.get("moment_number") == PAID_INVOICE
            )
            payment_events = ("bc.invoice.paid", "bc.invoice.payment_updated")

            def payments_seen() -> int:
                return sum(observed.counts()[t] for t in payment_events)

            seen = payments_seen()
            await emulator.control.pay_invoice(exported["bc_id"], PAID_AMOUNT, at=ref)
            print(
                f"\n== A payment of {PAID_AMOUNT} {exported.get('currency_code')} on invoice "
                f"{exported['bc_number']} (Moment {PAID_INVOICE}) is posted in BC =="
            )

            async def paid_seen() -> bool:
                if payments_seen() <= seen:
                    return False
                latest = observed.latest(payment_events)
                return latest is not None and float(
                    latest[1].get("paid_amount", latest[1].get("amount", 0))
                ) >= float(PAID_AMOUNT)

            paid = await wait_for(paid_seen, 15, 0.25, fail=False)
            latest = observed.latest(payment_events)
            if paid and latest is not None:
                print(f"  Moment receives: {latest[0]}")
                for key, value in latest[1].items():
                    print(f"    {key}: {value}")
            else:
                print("  demo: no payment event within 15 s")

            reconcile_url = f"{url}/reconciliation"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
                params = {"from": PERIOD[0], "to": PERIOD[1]}
                async with http.get(reconcile_url, params=params) as resp:
                    report = await resp.json()
            print(f"\n== GET {reconcile_url.removeprefix(api)}?from={PERIOD[0]}&to={PERIOD[1]} ==")
            print(render_summary(report))
            for row in report["rows"]:
                if row["class"] != "matched":
                    error = row.get("ledger_error_code") or ", ".join(row["differences"])
                    print(f"  {row['class']}: {row['type']} {row['moment_number']} ({error})")
            await channel.close()
            if keep:
                await _keep_running(api, token, support)
            return 0 if complete and paid else 1
        finally:
            for service in reversed(running):
                try:
                    await service.stop()
                except Exception as exc:
                    print(f"demo: {service.name} did not stop cleanly: {exc!r}")
            await _drop_topology(connection, settings)


async def _keep_running(api: str, token: str, support: str) -> None:
    """``--keep``: everything stays up for a person to click through, until Ctrl-C."""
    print(
        f"\n== Operations console: {api}/console ==\n"
        f"  sign in with the API token {token}  (name ops: may replay, archive, note)\n"
        f"  or with {support}  (name support, read-only: sees everything, changes nothing)\n"
        "  The dead letter of invoice 1866 waits under Dead letters > BC-ACCOUNT-MISSING.\n"
        "  Running until Ctrl-C (demo tokens, valid for this run only).",
        flush=True,
    )
    await asyncio.Event().wait()


def run(argv: list[str] | None = None) -> int:
    keep = "--keep" in (sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(main(keep=keep))
    except KeyboardInterrupt:
        # asyncio.run cancelled main(): its finally blocks stopped and deleted everything.
        print("\ndemo: interrupted; worker and emulator stopped, demo queues deleted.")
        return 130


if __name__ == "__main__":
    sys.exit(run())
