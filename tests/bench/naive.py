"""Baseline (b), the naive peer: what a team without bc-sync would write. A synchronous pika
consumer (prefetch 1) that does, with requests, the same BC calls for a customer as ours, one
message at a time: token (cached per tenant), company id (cached), find the customer by number,
POST or PATCH it, PATCH its posting groups on the CustomerCard page.

``python -m tests.bench.naive --amqp URL --queue Q --orgs orgs.json --url EMU --ca-file CA
--duration S`` prints one JSON line ``{"count", "seconds", "rate", "requests"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any
from urllib.parse import quote

try:
    import pika
    import requests
except ImportError as exc:  # pragma: no cover - reported by the bench
    print(json.dumps({"skipped": f"naive peer needs pika and requests ({exc.name} missing)"}))
    sys.exit(0)

SCOPE = "https://api.businesscentral.dynamics.com/.default"


class NaivePeer:
    def __init__(self, url: str, ca_file: str, orgs: dict[str, Any]) -> None:
        self.url = url
        self.orgs = orgs
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = ca_file
        self.tokens: dict[str, str] = {}
        self.companies: dict[str, str] = {}
        self.requests = 0

    def _call(self, method: str, url: str, tenant: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(tenant)}", **kw.pop("headers", {})}
        self.requests += 1
        resp = self.http.request(method, url, headers=headers, timeout=60, **kw)
        resp.raise_for_status()
        return resp

    def token(self, tenant: str) -> str:
        if tenant not in self.tokens:
            org = next(o for o in self.orgs.values() if o["tenant_id"] == tenant)
            resp = self.http.post(
                f"{self.url}/{tenant}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": org["client_id"],
                    "client_secret": org["client_secret"],
                    "scope": SCOPE,
                },
                timeout=60,
            )
            resp.raise_for_status()
            self.tokens[tenant] = resp.json()["access_token"]
        return self.tokens[tenant]

    def warm(self) -> None:
        """Tokens and company ids of every organization, as a long-running service has them."""
        for org in self.orgs.values():
            self._company(org)

    def _company(self, org: dict[str, Any]) -> str:
        tenant, env = org["tenant_id"], org["environment"]
        api = f"{self.url}/v2.0/{tenant}/{env}/api/v2.0"
        if tenant not in self.companies:
            rows = self._call("GET", f"{api}/companies", tenant).json()["value"]
            self.companies[tenant] = next(r["id"] for r in rows if r["name"] == org["company_name"])
        return f"{api}/companies({self.companies[tenant]})"

    def handle(self, body: bytes) -> None:
        event = json.loads(body)
        org = self.orgs[event["organizationid"]]
        tenant, env = org["tenant_id"], org["environment"]
        company = self._company(org)
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
        found = self._call(
            "GET", f"{company}/customers?$filter=number eq '{number}'", tenant
        ).json()["value"]
        if found:
            self._call(
                "PATCH",
                f"{company}/customers({found[0]['id']})",
                tenant,
                json=payload,
                headers={"If-Match": found[0]["@odata.etag"]},
            )
        else:
            self._call("POST", f"{company}/customers", tenant, json={"number": number, **payload})
        domestic = addr["country_code"] == "SE"
        page = f"{self.url}/v2.0/{tenant}/{env}/ODataV4/Company('{quote(org['company_name'])}')"
        self._call(
            "PATCH",
            f"{page}/CustomerCard('{number}')",
            tenant,
            json={
                "Gen_Bus_Posting_Group": "INRIKES" if domestic else "EXPORT",
                "Customer_Posting_Group": "KUNDER" if domestic else "KUNDER-EXP",
            },
            headers={"If-Match": "*"},
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.naive")
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--orgs", required=True, help="JSON file: org id -> BC credentials")
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    with open(args.orgs, encoding="utf-8") as fh:
        orgs = json.load(fh)
    peer = NaivePeer(args.url, args.ca_file, orgs)
    peer.warm()
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    count, first, last = 0, 0.0, 0.0
    start_requests = 0
    deadline = time.monotonic() + args.duration
    for method, _props, body in channel.consume(args.queue, inactivity_timeout=1.0):
        if method is None:
            if time.monotonic() > deadline:
                break
            continue
        peer.handle(body)
        channel.basic_ack(method.delivery_tag)
        now = time.perf_counter()
        if count == 0:
            first, start_requests = now, peer.requests
        count += 1
        last = now
        if time.monotonic() > deadline:
            break
    channel.cancel()
    connection.close()
    seconds = last - first
    done = count - 1
    print(
        json.dumps(
            {
                "count": done,
                "seconds": seconds,
                "rate": done / seconds if seconds > 0 else 0.0,
                "requests": peer.requests - start_requests,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
