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


# Modules whose frames tell that an OSError came from the database driver, not from elsewhere.
_DRIVER_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "worker.store")
# asyncpg's errors for a server that is gone, shutting down or not accepting connections yet.
_ASYNCPG_GONE = {
    "PostgresConnectionError",
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "ClientCannotConnectError",
    "CannotConnectNowError",
    "AdminShutdownError",
    "CrashShutdownError",
    "ConnectionRejectionError",
    "TooManyConnectionsError",
    "InterfaceError",
}
# SQLite's texts for a database it cannot use right now (another process, the disk).
_SQLITE_GONE = ("database is locked", "unable to open database", "disk i/o error")


def unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot be reached or used right now (refused or
    reset connection, a server shutting down, an invalidated pooled connection, SQLite locked
    or its file unreachable): a transient condition, unlike a bug in a query."""
    from sqlalchemy.exc import DBAPIError  # the store's own dependency; kept local to the check

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        kind = type(current)
        if kind.__module__.startswith("asyncpg") and any(
            k.__name__ in _ASYNCPG_GONE for k in kind.__mro__
        ):
            return True
        sqlite_like = kind.__module__ == "sqlite3" or kind.__name__ == "OperationalError"
        if sqlite_like and any(text in str(current).lower() for text in _SQLITE_GONE):
            return True
        if isinstance(current, OSError) and _raised_in_driver(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_in_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_DRIVER_MODULES):
            return True
        tb = tb.tb_next
    return False
