"""Run the emulator in-process (:class:`EmulatorServer`) or in a child process
(:func:`start_subprocess`),
and drive it through :class:`ControlClient` (the ``/_emulator/`` API over real HTTPS).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from . import tls
from .app import Emulator

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "EMULATOR_READY "


@dataclass(frozen=True)
class CompanyRef:
    """Where a control call applies: tenant (GUID or domain), environment name, company name."""

    tenant: str
    environment: str
    company: str

    def as_dict(self) -> dict[str, str]:
        return {"tenant": self.tenant, "environment": self.environment, "company": self.company}


class ControlClientError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"control API answered {status}: {body}")
        self.status = status
        self.body = body


class ControlClient:
    """Async client of the control API. Bound to the event loop of its first call; close it."""

    def __init__(self, url: str, ca_file: Path | str) -> None:
        self.url = url.rstrip("/")
        self.ca_file = Path(ca_file)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=tls.client_context(self.ca_file))
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        async with self._get_session().request(
            method, f"{self.url}/_emulator/{path}", json=body, params=clean
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise ControlClientError(resp.status, data)
            return data

    # -- world

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "health")  # type: ignore[no-any-return]

    async def seed(self, seed: dict[str, Any]) -> dict[str, Any]:
        """Additive, idempotent seed (format: README.md). Returns ids of tenants/companies."""
        return await self._call("POST", "seed", seed)  # type: ignore[no-any-return]

    async def reset(self, tenant: str | None = None) -> None:
        """Forget everything (faults, limits, logs too), or only one tenant's data."""
        await self._call("POST", "reset", {"tenant": tenant} if tenant else {})

    async def state(
        self, tenant: str | None = None, environment: str | None = None, company: str | None = None
    ) -> dict[str, Any]:
        return await self._call(  # type: ignore[no-any-return]
            "GET",
            "state",
            params={"tenant": tenant, "environment": environment, "company": company},
        )

    async def company_state(self, at: CompanyRef) -> dict[str, Any]:
        """All records of one company (customers incl. posting groups, invoices with lines…)."""
        data = await self.state(at.tenant, at.environment, at.company)
        for t in data["tenants"]:
            for e in t["environments"]:
                for c in e["companies"]:
                    return c  # type: ignore[no-any-return]
        raise ControlClientError(404, f"no company {at}")

    # -- observation

    async def requests(
        self,
        *,
        tenant: str | None = None,
        path: str | None = None,
        method: str | None = None,
        since: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        data = await self._call(
            "GET",
            "requests",
            params={
                "tenant": tenant,
                "path": path,
                "method": method,
                "since": since,
                "limit": limit,
            },
        )
        return data["requests"]  # type: ignore[no-any-return]

    async def clear_requests(self) -> None:
        await self._call("DELETE", "requests")

    async def stats(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "stats")
        return data["subjects"]  # type: ignore[no-any-return]

    async def subject_stats(self, tenant_id: str, client_id: str) -> dict[str, Any] | None:
        for s in await self.stats():
            if s["tenant"] == tenant_id.lower() and s["client_id"] == client_id.lower():
                return s
        return None

    # -- faults and limits

    async def add_fault(
        self,
        kind: str,
        *,
        tenant: str | None = None,
        method: str | None = None,
        path: str | None = None,
        probability: float = 1.0,
        count: int | None = None,
        latency_ms: float = 0.0,
        status: int = 503,
        retry_after: float | None = None,
        seed: int | None = None,
        after: bool | None = None,
    ) -> dict[str, Any]:
        """kind: latency | status | hang | drop | expire_tokens (see faults.py); ``after=True``
        (status, drop): serve the request first, then lose or replace its answer."""
        body: dict[str, Any] = {
            "kind": kind,
            "probability": probability,
            "latency_ms": latency_ms,
            "status": status,
        }
        for key, value in (
            ("tenant", tenant),
            ("method", method),
            ("path", path),
            ("count", count),
            ("retry_after", retry_after),
            ("seed", seed),
            ("after", after),
        ):
            if value is not None:
                body[key] = value
        return await self._call("POST", "faults", body)  # type: ignore[no-any-return]

    async def faults(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "faults"))["faults"]  # type: ignore[no-any-return]

    async def remove_fault(self, fault_id: int) -> None:
        await self._call("DELETE", f"faults/{fault_id}")

    async def clear_faults(self) -> None:
        await self._call("DELETE", "faults")

    async def limits(self) -> dict[str, Any]:
        return await self._call("GET", "limits")  # type: ignore[no-any-return]

    async def set_limits(self, **changes: Any) -> dict[str, Any]:
        """max_in_flight, max_queue, queue_timeout_s, rate_limit, rate_window_s, retry_after_s,
        latency_ms (global), token_lifetime_s, max_page_size, batch_max_operations,
        request_log_size."""
        return await self._call("PATCH", "limits", changes)  # type: ignore[no-any-return]

    # -- mutations ("BC changed under us")

    async def delete(
        self, kind: str, code: str, *, at: CompanyRef, dimension: str | None = None
    ) -> None:
        """kind: dimension | dimension_value (needs dimension) | gen_bus_posting_group |
        customer_posting_group | gl_account | payment_terms | customer | vat."""
        body: dict[str, Any] = {**at.as_dict(), "kind": kind, "code": code}
        if dimension is not None:
            body["dimension"] = dimension
        await self._call("POST", "delete", body)

    async def set_service(
        self, service: str, published: bool, *, at: CompanyRef, page: str | None = None
    ) -> None:
        """Publish (optionally as another page: 537, 21, 312, 110 or a default name), or not."""
        body: dict[str, Any] = {**at.as_dict(), "service": service, "published": published}
        if page is not None:
            body["page"] = page
        await self._call("POST", "services", body)

    async def add_purchase_invoice(
        self, invoice: dict[str, Any], *, at: CompanyRef
    ) -> dict[str, Any]:
        """Insert a purchase invoice (seed format); returns ``{"id", "number", "line_ids"}``."""
        return await self._call("POST", "purchase_invoices", {**at.as_dict(), "invoice": invoice})  # type: ignore[no-any-return]

    async def set_sales_invoice_status(
        self,
        status: str,
        *,
        at: CompanyRef,
        invoice_id: str | None = None,
        external_document_number: str | None = None,
    ) -> dict[str, Any]:
        """Set an unposted invoice's Sales Header status: ``Open`` (reopen), ``Released``,
        ``Pending Approval`` or ``Pending Prepayment``; returns the invoice as the API shows it."""
        body: dict[str, Any] = {**at.as_dict(), "status": status}
        if invoice_id is not None:
            body["id"] = invoice_id
        if external_document_number is not None:
            body["external_document_number"] = external_document_number
        return await self._call("POST", "sales_invoices/status", body)  # type: ignore[no-any-return]

    async def set_sales_invoice_approval(self, enabled: bool, *, at: CompanyRef) -> None:
        """Enable or disable the company's sales invoice approval workflow."""
        await self._call("POST", "approvals", {**at.as_dict(), "sales_invoices": enabled})

    async def cancel_purchase_invoice(
        self,
        *,
        at: CompanyRef,
        number: str | None = None,
        id_: str | None = None,
        modified_at: str | None = None,
    ) -> dict[str, Any]:
        """BC's "Cancel" on a posted purchase invoice (status Canceled, a corrective credit
        memo); returns ``{"id", "number", "status", "lastModifiedDateTime", "credit_memo"}``."""
        body: dict[str, Any] = {**at.as_dict(), "number": number, "id": id_}
        if modified_at is not None:
            body["modified_at"] = modified_at
        return await self._call("POST", "purchase_invoices/cancel", body)  # type: ignore[no-any-return]

    async def add_sales_invoice(
        self, invoice: dict[str, Any], *, at: CompanyRef, last_modified: str | None = None
    ) -> dict[str, Any]:
        """Create and post a sales invoice as a person would in BC (``invoice`` is a
        salesInvoices POST body with ``salesInvoiceLines``), optionally last modified at an
        earlier time; returns its payment state."""
        body = {**at.as_dict(), "invoice": invoice, "last_modified": last_modified}
        return await self._call("POST", "sales_invoices", body)  # type: ignore[no-any-return]

    async def pay_invoice(
        self,
        invoice: str,
        amount: float | str,
        *,
        at: CompanyRef,
        kind: str = "payment",
        reference: str = "",
    ) -> dict[str, Any]:
        """Apply a payment (or, ``kind="credit_memo"``, a credit memo's amount) to a posted
        invoice (id or number); returns ``{"application", "invoice"}``."""
        body = {
            **at.as_dict(),
            "invoice": invoice,
            "amount": str(amount),
            "kind": kind,
            "reference": reference,
        }
        return await self._call("POST", "payments", body)  # type: ignore[no-any-return]

    async def reverse_payment(self, application_id: str, *, at: CompanyRef) -> dict[str, Any]:
        """Unapply and reverse an applied amount; returns ``{"application", "invoice"}``."""
        return await self._call("POST", "payments/reverse", {**at.as_dict(), "id": application_id})  # type: ignore[no-any-return]

    async def set_sales_credit_memo_status(
        self,
        status: str,
        *,
        at: CompanyRef,
        credit_memo_id: str | None = None,
        external_document_number: str | None = None,
    ) -> dict[str, Any]:
        """The same as :meth:`set_sales_invoice_status` for an unposted credit memo."""
        body: dict[str, Any] = {**at.as_dict(), "status": status}
        if credit_memo_id is not None:
            body["id"] = credit_memo_id
        if external_document_number is not None:
            body["external_document_number"] = external_document_number
        return await self._call("POST", "sales_credit_memos/status", body)  # type: ignore[no-any-return]

    async def set_sales_credit_memo_approval(self, enabled: bool, *, at: CompanyRef) -> None:
        """Enable or disable the company's sales credit memo approval workflow."""
        await self._call("POST", "approvals", {**at.as_dict(), "sales_credit_memos": enabled})

    async def set_app(
        self,
        tenant: str,
        client_id: str,
        *,
        enabled_in_bc: bool | None = None,
        secret: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"tenant": tenant, "client_id": client_id}
        if enabled_in_bc is not None:
            body["enabled_in_bc"] = enabled_in_bc
        if secret is not None:
            body["secret"] = secret
        return await self._call("POST", "apps", body)  # type: ignore[no-any-return]

    async def expire_tokens(self, tenant: str) -> int:
        return int((await self._call("POST", "expire_tokens", {"tenant": tenant}))["expired"])


def public_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"https://{shown}:{port}"


class EmulatorServer:
    """The emulator in this process (same event loop as the caller)::

    async with EmulatorServer() as server:
        await server.control.seed(demo_seed())
        ...  # server.url, server.ca_file
    """

    def __init__(
        self,
        *,
        cert_dir: Path | None = None,
        fault_seed: int | None = 0,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.emulator = Emulator(fault_seed=fault_seed)
        self._cert_dir = cert_dir
        self._tmp: str | None = None
        self._runner: web.AppRunner | None = None
        self._shutdown_timeout = shutdown_timeout
        self.url = ""
        self.ca_file = Path()
        self.port = 0
        self._control: ControlClient | None = None

    @property
    def control(self) -> ControlClient:
        if self._control is None:
            raise RuntimeError("EmulatorServer is not started")
        return self._control

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        directory = self._cert_dir
        if directory is None:
            self._tmp = tempfile.mkdtemp(prefix="bc-emulator-")
            directory = Path(self._tmp)
        files = tls.generate(directory, (host,))
        self.ca_file = files.cert
        self.emulator.ca_file = str(files.cert)
        runner = web.AppRunner(
            self.emulator.build_app(), access_log=None, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=tls.server_context(files))
        await site.start()
        self._runner = runner
        addr = runner.addresses[0]
        self.port = int(addr[1])
        self.url = public_url(host, self.port)
        self._control = ControlClient(self.url, self.ca_file)
        return self

    async def stop(self) -> None:
        self.emulator.closing.set()  # ends hung requests, so shutdown never wedges
        if self._control is not None:
            await self._control.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


@dataclass
class EmulatorProcess:
    """An emulator running in a child process (``python -m tests.emulator``)."""

    url: str
    ca_file: Path
    process: subprocess.Popen[str]

    def new_control(self) -> ControlClient:
        """A ControlClient for the current event loop (close it when done)."""
        return ControlClient(self.url, self.ca_file)

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_subprocess(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> EmulatorProcess:
    """Start ``python -m tests.emulator --port PORT`` and wait for its ready line (blocking)."""
    args = [sys.executable, "-m", "tests.emulator", "--host", host, "--port", str(port)]
    if seed:
        args += ["--seed", seed]
    args += extra_args or []
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")])
    )
    child_env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, env=child_env, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    info: dict[str, Any] | None = None
    while info is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"BC emulator did not start (exit code {proc.poll()})")
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.5))
        if ready:
            line = proc.stdout.readline()
            if line.startswith(READY_PREFIX):
                info = json.loads(line[len(READY_PREFIX) :])
    stdout = proc.stdout

    def drain() -> None:  # never let a full pipe block the child
        for _ in stdout:
            pass

    threading.Thread(target=drain, daemon=True).start()
    return EmulatorProcess(info["url"], Path(info["ca_file"]), proc)


async def start_subprocess_async(**kwargs: Any) -> EmulatorProcess:
    return await asyncio.to_thread(start_subprocess, **kwargs)
