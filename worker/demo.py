"""``make demo``: the product end to end against the local BC emulator.

Runs from the repository root (the emulator lives in ``tests/emulator``). It needs a RabbitMQ
broker at ``BC_SYNC_AMQP_URL`` (default localhost) and uses its own queue prefix and exchange,
so it never touches a real deployment's queues.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import aio_pika

from worker.config.model import parse_config
from worker.config.settings import SettingsError, load_settings
from worker.log import configure

ORG = "demo-org"


async def main() -> int:
    from tests import factories as f
    from tests.emulator.seed import DEMO, demo_seed
    from tests.emulator.server import CompanyRef, EmulatorServer
    from worker.app import Runtime
    from worker.messaging.consumer import Consumer
    from worker.ops.dlq import list_dead_letters
    from worker.sync import registry

    try:
        base = load_settings()
    except SettingsError as exc:
        print(f"demo: invalid setting: {exc}")
        return 2
    amqp = base.amqp_url.get_secret_value()
    try:
        probe = await asyncio.wait_for(aio_pika.connect(amqp), 5)
        await probe.close()
    except Exception:
        print(
            "demo: no RabbitMQ broker answers at BC_SYNC_AMQP_URL (default localhost:5672). Start "
            "one: `docker compose -f deploy/docker-compose.yml up -d rabbitmq` or "
            "`apt-get install rabbitmq-server && rabbitmq-server -detached`."
        )
        return 1
    configure("console", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="bc-sync-demo-"))
    async with EmulatorServer() as emulator:
        await emulator.control.seed(demo_seed())
        settings = load_settings(
            amqp_url=amqp,
            queue_prefix="bc-sync-demo",
            exchange="bc-sync-demo.events",
            database_url=f"sqlite+aiosqlite:///{work / 'bc-sync.db'}",
            bc_api_url=emulator.url,
            authority_url=emulator.url,
            ca_file=emulator.ca_file,
            client_id=DEMO.client_id,
            retry_delays="1,2",
            outbox_dir=work / "outbox",
            demo=True,
        )
        print(f"BC emulator at {emulator.url}; state in {work}")
        runtime = await Runtime.open(settings)
        config = parse_config(
            {
                "tenant_id": DEMO.tenant_id,
                "client_secret": DEMO.client_secret,
                "environment": DEMO.environment,
                "company_name": "CRONUS%20Sverige%20AB",
                "export_customers": True,
                "customer_posting_groups": {
                    "domestic": {
                        "gen_bus_posting_group": "INRIKES",
                        "customer_posting_group": "KUNDER",
                    },
                    "abroad": {
                        "gen_bus_posting_group": "EXPORT",
                        "customer_posting_group": "KUNDER-EXP",
                    },
                },
                "export_projects": True,
                "project_dimension": "PROJEKT",
                "export_invoices": True,
                "department_dimension": "AVDELNING",
                "department_source": "department",
                "notification_recipients": [{"email": "ekonomi@example.se"}],
            }
        )
        print("save config:", await runtime.store.configs.put(ORG, config))
        print("save again: ", await runtime.store.configs.put(ORG, config))
        consumer = Consumer(
            settings, registry(runtime.sync_context()), connection=runtime.connection
        )
        await consumer.start()
        se, no = (
            f.customer("10001", country="SE"),
            f.customer("20001", country="NO", currency_code="NOK"),
        )
        late = f.customer("30001", country="SE")
        p1 = f.project("4005", name="Website relaunch", department="100", cust=se)
        p2 = f.project("4006", name="Data platform", department="200", cust=se)
        line = {"quantity": 10, "unit_price": 1200.0, "account_number": "3010", "vat_code": "25"}
        events: list[tuple[str, dict[str, Any]]] = [
            ("moment.customer.created", {"customer": se}),
            ("moment.customer.created", {"customer": no}),
            ("moment.project.created", {"project": p1}),
            ("moment.project.created", {"project": p2}),
            (
                "moment.invoice.created",
                {
                    "invoice": f.invoice(
                        "1864",
                        cust=se,
                        lines=[
                            {**line, "description": "Consulting, November", "project": p1},
                            {**line, "description": "Workshop", "quantity": 2, "project": p1},
                            {**line, "description": "Architecture review", "project": p2},
                        ],
                    )
                },
            ),
            (
                "moment.invoice.created",
                {
                    "invoice": f.invoice(
                        "1865",
                        cust=late,
                        lines=[{**line, "description": "Before its customer", "project": p2}],
                    )
                },
            ),
            (
                "moment.invoice.created",
                {
                    "invoice": f.invoice(
                        "1866",
                        cust=se,
                        lines=[
                            {
                                **line,
                                "description": "Deliberately failing",
                                "account_number": "9999",
                                "project": p1,
                            }
                        ],
                    )
                },
            ),
        ]
        channel = await runtime.connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.exchange)
        for type_, data in events:
            await exchange.publish(
                aio_pika.Message(f.body(type_, data, org=ORG), delivery_mode=2), routing_key=type_
            )
        print(f"published {len(events)} Moment events")
        ref = CompanyRef(DEMO.tenant_id, DEMO.environment, DEMO.company_name)
        for _ in range(60):
            await asyncio.sleep(0.5)
            dead = await list_dead_letters(settings)
            state = await emulator.control.company_state(ref)
            posted = [i for i in state.get("salesInvoices", []) if i.get("status") != "Draft"]
            if len(posted) >= 2 and dead:
                break
        await consumer.stop()
        _summary(state, dead)
        channel_cleanup = await runtime.connection.channel()
        for queue in (
            settings.queue("exports"),
            settings.queue("dead"),
            *(settings.queue(f"retry.{int(d)}s") for d in settings.retry_delays),
        ):
            await channel_cleanup.queue_delete(queue, if_unused=False, if_empty=False)
        await runtime.stop()
    return 0


def _summary(state: dict[str, Any], dead: list[Any]) -> None:
    print("\n== Business Central now holds ==")
    for c in state.get("customers", []):
        print(
            f"customer {c.get('number')}: {c.get('displayName')} ({c.get('country')}) "
            f"posting groups {c.get('genBusPostingGroup', c.get('Gen_Bus_Posting_Group', ''))}"
            f"/{c.get('customerPostingGroup', c.get('Customer_Posting_Group', ''))}"
        )
    for v in state.get("dimensionValues", []):
        print(
            f"dimension value {v.get('dimensionCode', v.get('Dimension_Code'))} "
            f"{v.get('code', v.get('Code'))}: {v.get('displayName', v.get('Name'))}"
        )
    for i in state.get("salesInvoices", []):
        print(
            f"sales invoice {i.get('number')} (Moment {i.get('externalDocumentNumber')}): "
            f"{i.get('status')}, total {i.get('totalAmountIncludingTax')}"
        )
    print("\n== Dead letters ==")
    for d in dead:
        print(json.dumps(d.row(), default=str))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
