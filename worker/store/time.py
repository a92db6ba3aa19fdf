"""Shared time helpers: aware UTC datetimes and their ISO text."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (the only kind the store accepts)."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """``value.isoformat()``, or ``None`` for ``None``."""
    return value.isoformat() if value is not None else None
