"""The integration log (DESIGN §11): where each Moment object stands in Business Central and the
steps it went through, read from the sync ledger. One code path for the admin API
(``GET …/business-central/objects`` and ``…/objects/{type}/{id}``) and ``bc-sync log``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from worker.ops.dlq import parse_time
from worker.store import Store, check_org_id
from worker.sync.ledger import (
    HISTORY_LIMIT,
    OBJECT_TYPES,
    LedgerRepository,
    LogFilterError,
    LogFilters,
)

__all__ = ["IntegrationLog", "LogFilterError", "parse_filters"]


def parse_filters(
    *,
    type: str | None = None,
    state: str | None = None,
    number: str | None = None,
    since: str | None = None,
    limit: str | int | None = None,
    cursor: str | None = None,
    now: datetime | None = None,
) -> LogFilters:
    """Filters from user input; ``since`` as ``dlq --since`` takes it (ISO, or ``2h``/``7d``).

    Raises :class:`LogFilterError` naming the field."""
    when: datetime | None = None
    if since:
        try:
            when = parse_time(since, now=now)
        except ValueError as exc:
            raise LogFilterError("since", str(exc)) from None
    return LogFilters.parse(
        type=type, state=state, number=number, since=when, limit=limit, cursor=cursor
    )


class IntegrationLog:
    """Reads of the ledger as JSON-ready answers."""

    def __init__(self, store: Store) -> None:
        self.repository = LedgerRepository(store)

    async def objects(self, org_id: str, filters: LogFilters) -> dict[str, Any]:
        """One page, newest change first, and the cursor of the next one (None at the end)."""
        entries, cursor = await self.repository.page(check_org_id(org_id), filters)
        return {
            "organization": org_id,
            "objects": [e.to_dict() for e in entries],
            "next_cursor": cursor,
        }

    async def object(
        self, org_id: str, object_type: str, moment_id: str, *, history: int = HISTORY_LIMIT
    ) -> dict[str, Any] | None:
        """One object with its last ``history`` steps (oldest first), or None."""
        if object_type not in OBJECT_TYPES:
            raise LogFilterError("type", f"must be one of {', '.join(OBJECT_TYPES)}")
        org_id = check_org_id(org_id)
        entry = await self.repository.get(org_id, object_type, moment_id)
        if entry is None:
            return None
        steps = await self.repository.history(org_id, object_type, moment_id, limit=history)
        return {**entry.to_dict(), "history": [s.to_dict() for s in steps]}
