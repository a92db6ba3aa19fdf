"""The one way a test waits for something: poll a condition until it holds or time runs out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.05,
    *,
    fail: bool = True,
) -> Any:
    """Poll an async or sync predicate until it returns a truthy value, and return that value.

    At the deadline this raises ``AssertionError`` (the test fails, saying what it waited for),
    or with ``fail=False`` returns the last (falsy) value, for callers that report it themselves.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or loop.time() > deadline:
            break
        await asyncio.sleep(interval)
    if not value and fail:
        raise AssertionError(f"condition not met within {timeout}s: {_name(predicate)}")
    return value


def wait_for_sync(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.05,
    *,
    fail: bool = True,
) -> Any:
    """:func:`wait_for` for code outside an event loop (pytest hooks, process handling)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            break
        time.sleep(interval)
    if not value and fail:
        raise AssertionError(f"condition not met within {timeout}s: {_name(predicate)}")
    return value


def _name(predicate: Callable[[], Any]) -> str:
    return getattr(predicate, "__qualname__", repr(predicate))
