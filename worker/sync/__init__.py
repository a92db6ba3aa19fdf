"""One module per data object: customers, projects and invoices (export), expenses (import).

Handlers are pure of AMQP: event in, :class:`~worker.events.handlers.Outcome` out, or a failure
class from :mod:`worker.errors`.
"""

from __future__ import annotations

from functools import partial

from worker.events.handlers import Registry
from worker.sync import customers, invoices, projects
from worker.sync.context import SyncContext


def registry(ctx: SyncContext) -> Registry:
    """Event type → handler, bound to one shared context (under the sync ledger's
    newest-wins rule when the context has a ledger)."""
    handlers: Registry = {
        "moment.customer.created": partial(customers.handle, ctx),
        "moment.customer.updated": partial(customers.handle, ctx),
        "moment.project.created": partial(projects.handle, ctx),
        "moment.project.updated": partial(projects.handle, ctx),
        "moment.invoice.created": partial(invoices.handle, ctx),
    }
    if ctx.ledger is not None:
        handlers = {t: ctx.ledger.guard(h, ctx.configs) for t, h in handlers.items()}
    return handlers
