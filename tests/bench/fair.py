"""Baseline (c), the fair one: the smallest correct aio-pika + aiohttp program doing our job for
a customer event. The same three BC calls as bc-sync (find the customer by number, create or
update it, set its posting groups on the CustomerCard page) over TLS to the same emulator, a
token and company id cached per tenant (fetched on first use, as the worker does), at most 5
requests in flight per tenant (BC's limit), a confirmed result event, and the ack only after
all of that. Nothing else: no validation beyond what the calls need, no retries, no ledger,
no metrics, no logs.

``python -m tests.bench.fair --amqp URL --queue Q --results R --orgs orgs.json --url EMU
--ca-file CA --count N [--prefetch P]`` prints one JSON line ``{"count", "seconds", "rate",
"requests", "request_rate", "cpu_s"}`` (from the first message received to the last acked;
``cpu_s`` is this process's CPU time over that window).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Any
from urllib.parse import quote

import aio_pika
import aiohttp
from aio_pika.abc import AbstractIncomingMessage

SCOPE = "https://api.businesscentral.dynamics.com/.default"
PER_TENANT = 5  # BC's concurrent requests per tenant and client


class Tenant:
    """One organization's BC: credentials, its cached token and company URL, its slots."""

    def __init__(self, url: str, org: dict[str, Any]) -> None:
        self.org = org
        self.tenant = org["tenant_id"]
        self.api = f"{url}/v2.0/{self.tenant}/{org['environment']}/api/v2.0"
        company = quote(org["company_name"])
        self.page = f"{url}/v2.0/{self.tenant}/{org['environment']}/ODataV4/Company('{company}')"
        self.token_url = f"{url}/{self.tenant}/oauth2/v2.0/token"
        self.slots = asyncio.Semaphore(PER_TENANT)
        self.ready: asyncio.Task[tuple[str, str]] | None = None  # (token, company URL)


class FairPeer:
    def __init__(self, session: aiohttp.ClientSession, url: str, orgs: dict[str, Any]) -> None:
        self.session = session
        self.tenants = {org_id: Tenant(url, org) for org_id, org in orgs.items()}
        self.requests = 0

    async def _call(
        self, t: Tenant, token: str, method: str, url: str, **kw: Any
    ) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        async with t.slots:
            self.requests += 1
            async with self.session.request(method, url, headers=headers, **kw) as resp:
                resp.raise_for_status()
                body = await resp.read()
        return json.loads(body) if body else None

    async def _connect(self, t: Tenant) -> tuple[str, str]:
        form = {
            "grant_type": "client_credentials",
            "client_id": t.org["client_id"],
            "client_secret": t.org["client_secret"],
            "scope": SCOPE,
        }
        async with self.session.post(t.token_url, data=form) as resp:
            resp.raise_for_status()
            token = str((await resp.json())["access_token"])
        rows = (await self._call(t, token, "GET", f"{t.api}/companies") or {})["value"]
        company = next(r["id"] for r in rows if r["name"] == t.org["company_name"])
        return token, f"{t.api}/companies({company})"

    async def handle(self, body: bytes) -> None:
        event = json.loads(body)
        t = self.tenants[event["organizationid"]]
        if t.ready is None:  # one token and company lookup per tenant, shared by its events
            t.ready = asyncio.ensure_future(self._connect(t))
        token, company = await t.ready
        c = event["data"]["customer"]
        addr = c["invoice_address"]
        payload = {
            "displayName": c["name"],
            "addressLine1": addr.get("line1") or "",
            "city": addr.get("city") or "",
            "postalCode": addr.get("postal_code") or "",
            "country": addr["country_code"],
            "email": c.get("email") or "",
            "phoneNumber": c.get("phone") or "",
            "taxRegistrationNumber": c.get("vat_number") or "",
        }
        number = c["number"]
        found = await self._call(
            t, token, "GET", f"{company}/customers?$filter=number eq '{number}'"
        )
        rows = (found or {})["value"]
        if rows:
            await self._call(
                t,
                token,
                "PATCH",
                f"{company}/customers({rows[0]['id']})",
                json=payload,
                headers={"If-Match": rows[0]["@odata.etag"]},
            )
        else:
            await self._call(
                t, token, "POST", f"{company}/customers", json={"number": number, **payload}
            )
        domestic = addr["country_code"] == "SE"
        await self._call(
            t,
            token,
            "PATCH",
            f"{t.page}/CustomerCard('{number}')",
            json={
                "Gen_Bus_Posting_Group": "INRIKES" if domestic else "EXPORT",
                "Customer_Posting_Group": "KUNDER" if domestic else "KUNDER-EXP",
            },
            headers={"If-Match": "*"},
        )


async def consume(args: argparse.Namespace) -> None:
    with open(args.orgs, encoding="utf-8") as fh:
        orgs = json.load(fh)
    context = ssl.create_default_context(cafile=args.ca_file)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, ssl=context))
    peer = FairPeer(session, args.url, orgs)
    connection = await aio_pika.connect(args.amqp)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=args.prefetch)
    queue = await channel.get_queue(args.queue, ensure=False)
    results = await connection.channel(publisher_confirms=True)
    done = asyncio.Event()
    state = {"n": 0, "first": 0.0, "last": 0.0, "requests": 0, "cpu0": 0.0, "cpu1": 0.0}

    async def on_message(message: AbstractIncomingMessage) -> None:
        if not state["first"]:
            state["first"] = time.perf_counter()
            state["cpu0"] = time.process_time()
            state["requests"] = peer.requests
        await peer.handle(message.body)
        answer = {"type": "bc.customer.exported", "id": message.message_id}
        await results.default_exchange.publish(  # returns once the broker confirmed it
            aio_pika.Message(
                json.dumps(answer).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=args.results,
        )
        await message.ack()
        state["n"] += 1
        state["last"] = time.perf_counter()
        state["cpu1"] = time.process_time()
        if state["n"] >= args.count:
            done.set()

    await queue.consume(on_message)
    await done.wait()
    seconds = state["last"] - state["first"]
    requests = peer.requests - state["requests"]
    print(
        json.dumps(
            {
                "count": args.count,
                "seconds": seconds,
                "rate": args.count / seconds if seconds > 0 else 0.0,
                "requests": requests,
                "request_rate": requests / seconds if seconds > 0 else 0.0,
                "cpu_s": state["cpu1"] - state["cpu0"],
            }
        )
    )
    await session.close()
    await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fair")
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--results", required=True, help="queue of the result events")
    parser.add_argument("--orgs", required=True, help="JSON file: org id -> BC credentials")
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefetch", type=int, default=256)
    asyncio.run(consume(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
