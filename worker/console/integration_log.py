"""The console's integration-log page reads the sync ledger (:mod:`worker.ops.integration_log`,
the same reads as ``GET …/business-central/objects`` and ``bc-sync log``) through
:class:`LedgerReader`."""

from __future__ import annotations

from typing import Any, Protocol

from worker.ops.integration_log import IntegrationLog, LogFilterError, parse_filters


class IntegrationLogReader(Protocol):
    async def find(self, org: str, number: str, object_type: str | None) -> list[dict[str, Any]]:
        """The objects whose Moment number (or id) is ``number``: ``object_type``,
        ``moment_id``, ``moment_number``, ``state``, ..."""
        ...

    async def detail(self, org: str, object_type: str, moment_id: str) -> dict[str, Any] | None:
        """One object's state and its ``history`` of steps (``at``, ``step``, ``code``,
        ``detail``)."""
        ...

    async def recent(self, org: str, *, limit: int) -> list[dict[str, Any]]:
        """The organization's most recently changed objects, newest first."""
        ...


class LedgerReader:
    """:class:`IntegrationLogReader` on the sync ledger; bad input is a ``ValueError`` with a
    message for the page."""

    def __init__(self, log: IntegrationLog) -> None:
        self.log = log

    async def find(self, org: str, number: str, object_type: str | None) -> list[dict[str, Any]]:
        try:
            filters = parse_filters(type=object_type, number=number, limit=50)
        except LogFilterError as exc:
            raise ValueError(f"{exc.field}: {exc.message}") from None
        answer = await self.log.objects(org, filters)
        return list(answer["objects"])

    async def detail(self, org: str, object_type: str, moment_id: str) -> dict[str, Any] | None:
        try:
            return await self.log.object(org, object_type, moment_id)
        except LogFilterError as exc:
            raise ValueError(f"{exc.field}: {exc.message}") from None

    async def recent(self, org: str, *, limit: int) -> list[dict[str, Any]]:
        answer = await self.log.objects(org, parse_filters(limit=limit))
        return list(answer["objects"])
