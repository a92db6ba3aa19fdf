"""What every repository shares: the store's error and the organization key."""

from __future__ import annotations

ORG_ID_MAX = 100


class StoreError(Exception):
    """The store cannot do what was asked; the message is safe to show to ops."""


def check_org_id(org_id: str) -> str:
    """A Moment organization id as the store keys it (non-empty, one line, ≤ 100 characters)."""
    if not isinstance(org_id, str) or not org_id.strip():
        raise ValueError("organization id must be a non-empty string")
    if len(org_id) > ORG_ID_MAX or not org_id.isprintable():
        raise ValueError(f"organization id must be printable and at most {ORG_ID_MAX} characters")
    return org_id
