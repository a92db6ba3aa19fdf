"""Sync: one module per data object: customers, projects, invoices and credit notes (export),
expenses and payments (import).

Handlers are pure of AMQP: event in, :class:`~worker.events.handlers.Outcome` out, or a failure
class from :mod:`worker.errors`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from worker.events.envelope import Event
from worker.events.handlers import Outcome, Registry
from worker.sync import credit_notes, customers, invoices, projects
from worker.sync.context import SyncContext

__all__ = ["SyncContext", "registry"]


async def invoice_created(ctx: SyncContext, event: Event[Any]) -> Outcome:
    """``moment.invoice.created`` carries invoices and credit notes (``kind``, or a negative
    total: DESIGN §11); each goes to its own export."""
    if event.data.invoice.is_credit_note:
        return await credit_notes.handle(ctx, event)
    return await invoices.handle(ctx, event)


def registry(ctx: SyncContext) -> Registry:
    """Event type → handler, bound to one shared context (under the sync ledger's
    newest-wins rule when the context has a ledger)."""
    handlers: Registry = {
        "moment.customer.created": partial(customers.handle, ctx),
        "moment.customer.updated": partial(customers.handle, ctx),
        "moment.project.created": partial(projects.handle, ctx),
        "moment.project.updated": partial(projects.handle, ctx),
        "moment.invoice.created": partial(invoice_created, ctx),
    }
    if ctx.ledger is not None:
        handlers = {t: ctx.ledger.guard(h, ctx.configs) for t, h in handlers.items()}
    return handlers
